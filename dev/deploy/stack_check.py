"""Deploys deploy/ecs/stack.yaml into a local AWS API (moto_server on
127.0.0.1) and reads it back through the AWS SDK (dev/deploy-check stack).

What is checked is what deploy/ecs/README.md promises: a Fargate service
with the deployment circuit breaker and rollback and no fixed desired count,
a task definition with the worker's port, JSON logs to the stack's log
group, secrets from Secrets Manager, a stop timeout that holds the worker's
shutdown timeout, an internal load balancer whose target group checks
/health, a least-privilege task role, and the outputs. moto reports
Application Auto Scaling resources created but cannot describe them, so the
scaling policies are checked in the parsed template.
"""

import ast
import json
import os
import socket
import subprocess
import sys
import time

import boto3
from cfnlint.decode import decode

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATE = os.path.join(REPO, "deploy", "ecs", "stack.yaml")
REGION = "us-east-1"
failures = []


def log(msg):
    print(f"[deploy-check] {msg}", file=sys.stderr, flush=True)


def check(ok, what):
    if not ok:
        failures.append(what)
        log(f"FAILED: {what}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def policy(document):
    """moto 5.2 returns inline policies of stack-made roles as a Python repr."""
    if isinstance(document, dict):
        return document
    try:
        return json.loads(document)
    except ValueError:
        return ast.literal_eval(document)


def env_of(container):
    return {e["name"]: e["value"] for e in container.get("environment", [])}


def check_template(t):
    """Decisions read from the template itself: scaling (moto cannot describe
    it) and the service, task and target group properties moto 5.2's
    CloudFormation drops (launch type, circuit breaker, load balancers,
    network configuration, network mode, CPU, target group attributes)."""
    res = t["Resources"]
    service = res["Service"]["Properties"]
    check(service.get("LaunchType") == "FARGATE", "the service runs on Fargate")
    breaker = service.get("DeploymentConfiguration", {}).get("DeploymentCircuitBreaker")
    check(breaker == {"Enable": True, "Rollback": True}, f"deployment circuit breaker with rollback: {breaker}")
    lbs = service.get("LoadBalancers", [])
    check(len(lbs) == 1 and lbs[0].get("ContainerName") == "sluice" and lbs[0].get("ContainerPort") == 8083,
          f"the service registers the sluice container's port 8083: {lbs}")
    net = service.get("NetworkConfiguration", {}).get("AwsvpcConfiguration", {})
    check(net.get("AssignPublicIp") == "DISABLED" and net.get("Subnets") == {"Ref": "SubnetIds"},
          "tasks in the given subnets without public addresses")
    task = res["TaskDefinition"]["Properties"]
    check(task.get("NetworkMode") == "awsvpc" and task.get("RequiresCompatibilities") == ["FARGATE"]
          and task.get("Cpu") == {"Ref": "TaskCpu"}, "a Fargate awsvpc task definition sized by TaskCpu/TaskMemory")
    attrs = {a["Key"]: a["Value"] for a in res["TargetGroup"]["Properties"].get("TargetGroupAttributes", [])}
    dereg = int(attrs.get("deregistration_delay.timeout_seconds", "300"))
    check(dereg <= 30, f"deregistration delay short enough for REST calls to drain, not to delay stops: {dereg} s")
    check("DesiredCount" not in service, "the service has no DesiredCount (the scalable target owns it)")
    target = res["ScalableTarget"]["Properties"]
    check(target["ScalableDimension"] == "ecs:service:DesiredCount", "the scalable target is the service's desired count")
    check(target["MinCapacity"] == {"Ref": "MinTasks"} and target["MaxCapacity"] == {"Ref": "MaxTasks"},
          "the scalable target's bounds are MinTasks..MaxTasks")
    policies = {k: v["Properties"] for k, v in res.items() if v["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"}
    check(len(policies) == 2, f"two scaling policies (CPU, lag per task), found {sorted(policies)}")
    cpu = policies.get("CpuScaling", {}).get("TargetTrackingScalingPolicyConfiguration", {})
    check(cpu.get("PredefinedMetricSpecification", {}).get("PredefinedMetricType") == "ECSServiceAverageCPUUtilization",
          "target tracking on the service's average CPU")
    lag = policies.get("LagScaling", {}).get("TargetTrackingScalingPolicyConfiguration", {})
    metrics = {m["Id"]: m for m in lag.get("CustomizedMetricSpecification", {}).get("Metrics", [])}
    returned = [m for m in metrics.values() if m.get("ReturnData")]
    check(len(returned) == 1, "the lag policy's metric math returns one series")
    expression = str(returned[0].get("Expression", "")) if returned else ""
    check("FILL(lag" in expression and "/ FILL(tasks" in expression,
          f"lag per task = total lag / running tasks, missing lag filled as breaching: {expression}")
    lag_metric = metrics.get("lag", {}).get("MetricStat", {})
    check(lag_metric.get("Metric", {}).get("MetricName") == "sluice_consumer_lag" and lag_metric.get("Stat") == "Sum",
          "the lag is the sum of sluice_consumer_lag over the cluster")
    check(metrics.get("tasks", {}).get("MetricStat", {}).get("Metric", {}).get("MetricName") == "RunningTaskCount",
          "divided by the service's RunningTaskCount")
    check(lag.get("TargetValue") == {"Ref": "LagPerTaskTarget"}, "the lag target is the LagPerTaskTarget parameter")
    check(res["LagAlarm"]["Properties"].get("TreatMissingData") == "breaching",
          "a missing lag metric raises the alarm (treated as breaching)")
    collector = res["TaskDefinition"]["Properties"]["ContainerDefinitions"][1]
    check("sluice_consumer_lag" in str(collector.get("Environment")),
          "the collector publishes sluice_consumer_lag (the metric the policy divides)")


def main():
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION)
        client = lambda name: session.client(name, endpoint_url=endpoint)  # noqa: E731
        cfn = client("cloudformation")
        deadline = time.monotonic() + 30
        while True:
            try:
                cfn.list_stacks()
                break
            except Exception:
                if time.monotonic() > deadline or moto.poll() is not None:
                    raise SystemExit("[deploy-check] FAILED: moto_server did not start")
                time.sleep(0.2)

        ec2 = client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{REGION}{az}")
                   ["Subnet"]["SubnetId"] for i, az in ((1, "a"), (2, "b"))]
        sm = client("secretsmanager")
        kafka_secret = sm.create_secret(Name="sluice/kafka", SecretString='{"kafka_properties": '
                                        '"security.protocol=SASL_SSL,sasl.mechanism=SCRAM-SHA-512,'
                                        'sasl.username=u,sasl.password=p"}')["ARN"]
        rest_secret = sm.create_secret(Name="sluice/rest", SecretString='{"rest_auth_tokens": "t1,t2"}')["ARN"]

        with open(TEMPLATE) as f:
            body = f.read()
        params = {
            "VpcId": vpc, "SubnetIds": ",".join(subnets), "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sluice:0.1.0",
            "KafkaBootstrapServers": "b-1.msk.example:9096,b-2.msk.example:9096",
            "KafkaPropertiesSecretArn": kafka_secret, "RestAuthSecretArn": rest_secret,
            "ClusterId": "orders", "BucketName": "datalake", "BucketPrefix": "raw/sluice/",
            "TaskCpu": "2048", "TaskMemory": "4096", "MinTasks": "2", "MaxTasks": "8",
        }
        t0 = time.monotonic()
        cfn.create_stack(StackName="sluice", TemplateBody=body, Capabilities=["CAPABILITY_IAM"],
                         Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
        deadline = time.monotonic() + 120
        while True:
            stack = cfn.describe_stacks(StackName="sluice")["Stacks"][0]
            if not stack["StackStatus"].endswith("IN_PROGRESS"):
                break
            if time.monotonic() > deadline:
                raise SystemExit("[deploy-check] FAILED: the stack did not finish within 120 s")
            time.sleep(0.5)
        if stack["StackStatus"] != "CREATE_COMPLETE":
            events = cfn.describe_stack_events(StackName="sluice")["StackEvents"]
            reasons = [f"{e.get('LogicalResourceId')}: {e.get('ResourceStatusReason')}" for e in events
                       if "FAILED" in e.get("ResourceStatus", "")]
            raise SystemExit(f"[deploy-check] FAILED: the stack is {stack['StackStatus']}: {reasons}")
        log(f"stack CREATE_COMPLETE in moto in {time.monotonic() - t0:.1f} s")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        resources = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                     for r in cfn.describe_stack_resources(StackName="sluice")["StackResources"]
                     if r.get("LogicalResourceId") and r.get("PhysicalResourceId")}

        ecs = client("ecs")
        svc = ecs.describe_services(cluster=resources["Cluster"], services=[resources["Service"]])["services"][0]
        check(svc["status"] == "ACTIVE" and "desiredCount" in svc, "the service exists in the cluster")
        td = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
        check(td.get("memory") == "4096", f"memory from the parameters: {td.get('memory')}")
        worker = next(c for c in td["containerDefinitions"] if c["name"] == "sluice")
        env = env_of(worker)
        check(env.get("SLUICE_BOOTSTRAP_SERVERS") == params["KafkaBootstrapServers"], "SLUICE_BOOTSTRAP_SERVERS from the parameter")
        check(env.get("SLUICE_CLUSTER_ID") == "orders", "SLUICE_CLUSTER_ID from the parameter")
        check(env.get("SLUICE_LOG_FORMAT") == "json", "JSON logs")
        check([p["containerPort"] for p in worker.get("portMappings", [])] == [8083], "port 8083")
        secrets = {s["name"]: s["valueFrom"] for s in worker.get("secrets", [])}
        check(secrets == {"SLUICE_KAFKA_PROPERTIES": f"{kafka_secret}:kafka_properties::",
                          "SLUICE_REST_AUTH_TOKENS": f"{rest_secret}:rest_auth_tokens::"},
              f"Kafka properties and REST tokens from Secrets Manager: {secrets}")
        stop = worker.get("stopTimeout", 30)
        shutdown_s = int(env.get("SLUICE_SHUTDOWN_TIMEOUT_MS", "20000")) / 1000
        check(stop <= 120 and shutdown_s + 10 <= stop,
              f"the worker's shutdown ({shutdown_s} s) fits inside stopTimeout ({stop} s, Fargate's maximum 120) with 10 s to spare")
        check(worker.get("healthCheck", {}).get("command") == ["CMD", "/usr/local/bin/sluice", "health"],
              "the container health check is `sluice health`")
        logs = worker.get("logConfiguration", {})
        check(logs.get("logDriver") == "awslogs" and logs.get("options", {}).get("awslogs-group") == outputs.get("LogGroup"),
              f"logs to the stack's log group (output LogGroup): {logs}")
        check(worker.get("user") == "10001:10001", "the worker runs as the image's non-root user")

        elb = client("elbv2")
        lb = elb.describe_load_balancers(LoadBalancerArns=[resources["LoadBalancer"]])["LoadBalancers"][0]
        check(lb["Scheme"] == "internal", "the load balancer is internal")
        tg = elb.describe_target_groups(TargetGroupArns=[resources["TargetGroup"]])["TargetGroups"][0]
        check(tg.get("HealthCheckPath") == "/health" and tg.get("Port") == 8083 and tg.get("TargetType") == "ip",
              f"the target group checks /health on 8083 (ip targets): {tg.get('HealthCheckPath')}")
        check(outputs.get("RestEndpoint") == f"http://{lb['DNSName']}", f"output RestEndpoint: {outputs.get('RestEndpoint')}")

        sg = client("ec2").describe_security_groups(GroupIds=[resources["TaskSecurityGroup"]])["SecurityGroups"][0]
        ingress = sg.get("IpPermissions", [])
        check(len(ingress) == 1 and ingress[0].get("FromPort") == 8083 and not ingress[0].get("IpRanges")
              and [p["GroupId"] for p in ingress[0].get("UserIdGroupPairs", [])] == [resources["AlbSecurityGroup"]],
              f"only the load balancer reaches the tasks' port: {ingress}")

        iam = client("iam")
        task_role = resources["TaskRole"]
        doc = policy(iam.get_role_policy(RoleName=task_role, PolicyName="s3-sink-bucket-prefix")["PolicyDocument"])
        statements = {s["Sid"]: s for s in doc["Statement"]}
        objects = statements.get("ObjectsUnderPrefix", {})
        check(objects.get("Resource") == "arn:aws:s3:::datalake/raw/sluice/*", f"object access under the prefix only: {objects.get('Resource')}")
        check({"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"} <= set(objects.get("Action", [])),
              "multipart uploads can be written and aborted")
        listing = statements.get("ListUnderPrefix", {})
        check(set(listing.get("Action", [])) == {"s3:ListBucket", "s3:ListBucketMultipartUploads"}
              and listing.get("Condition", {}).get("StringLike", {}).get("s3:prefix") == "raw/sluice/*",
              "listing (objects, multipart uploads) limited to the prefix")
        check(not any("*" == a or a.endswith(":*") for s in doc["Statement"] for a in s["Action"]), "no wildcard actions")
        exec_doc = policy(iam.get_role_policy(RoleName=resources["ExecutionRole"], PolicyName="read-worker-secrets")["PolicyDocument"])
        check(sorted(exec_doc["Statement"][0]["Resource"]) == sorted(
                  [kafka_secret, rest_secret, "arn:aws:secretsmanager:us-east-1:123456789012:secret:sluice/worker/*"]),
              f"the execution role reads the two secrets and the stack's worker/ secrets only: {exec_doc['Statement']}")

        # Without secrets (PLAINTEXT brokers, open REST API) the worker gets
        # no secret variables at all.
        plain = {k: v for k, v in params.items() if k not in ("KafkaPropertiesSecretArn", "RestAuthSecretArn")}
        cfn.create_stack(StackName="sluice-plain", TemplateBody=body, Capabilities=["CAPABILITY_IAM"],
                         Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in plain.items()])
        plain_stack = cfn.describe_stacks(StackName="sluice-plain")["Stacks"][0]
        check(plain_stack["StackStatus"] == "CREATE_COMPLETE", f"the stack without secrets deploys: {plain_stack['StackStatus']}")
        plain_td = next(r["PhysicalResourceId"] for r in cfn.describe_stack_resources(StackName="sluice-plain")["StackResources"]
                        if r.get("LogicalResourceId") == "TaskDefinition")
        plain_worker = ecs.describe_task_definition(taskDefinition=plain_td)["taskDefinition"]["containerDefinitions"][0]
        # moto keeps AWS::NoValue list items as nulls; CloudFormation drops them.
        check(not [x for x in plain_worker.get("secrets") or [] if x],
              f"no secrets without secret ARNs: {plain_worker.get('secrets')}")

        check_template(decode(TEMPLATE)[0])
        if failures:
            raise SystemExit(f"[deploy-check] FAILED: {len(failures)} stack check(s)")
        log("stack check passed (deployed in moto, read back through boto3; scaling from the template)")
    finally:
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
