#!/usr/bin/env python3
"""Patches the Tansu 0.6.0 sources that dev/services builds the test broker from.

Tansu's in-memory engine (dynostore) answers a fetch only with the record
batches whose base offset is at or after the requested offset. A consumer that
resumes inside a batch (from a committed offset, after a pause, after a
rebalance) then gets nothing, forever: measured with tests/tests/worker_s3.rs
(a sink stalled at offset 6000 of a 5000-record batch starting at 5000) and a
plain rdkafka consumer assigned at offset 50 of one 100-record batch (0
records). Apache Kafka returns the batch holding the offset and the client
skips the records before it; the patch makes Tansu do the same.

It also makes consumer-group offset commits behave as Kafka's do where sluice's
sink notes rely on them (connector_api::SinkContext::commit_note): Tansu kept
the metadata committed with an offset in storage but answered OffsetFetch with
an empty one, and committed whatever generation a member named. Measured with
tests/tests/broker_contract.rs (metadata came back as ""). The patch returns
the stored metadata (in-memory engine) and refuses, in a formed group, a commit
from a member the group no longer has (UNKNOWN_MEMBER_ID) or from an older
generation (ILLEGAL_GENERATION). While a group is forming it stays lenient:
Tansu bumps the generation on every join, so a member committing on revoke
would be refused where Kafka accepts it.

And it keeps a consumer group from keeping a leader it no longer has. Tansu
elects a group's leader only when a join finds none, and one path left a gone
member as leader for good: a heartbeat to a formed group dropped the members
whose session had run out (the leader among them) but kept the group formed
and its leader set, so every later join was answered "the leader is that gone
member", the survivors' syncs were refused and their partitions were never
assigned again (measured with tests/tests/broker_contract.rs: a formed group
of two whose leader is killed; the survivor never got the dead leader's
partitions, with cooperative-sticky and with range; docs/decisions/0033). A
leader leaving a group that is forming was kept the same way. The patch
makes that heartbeat leave the expiry to the code the join path already uses
(the group re-forms without a leader), and a forming group drops a leader
that is no longer a member, so the next member to join leads, as Kafka
elects a new leader when the old one leaves or times out. And a forming group
takes a SyncGroup only from its leader, also when it has none (the leader
expired between a member's join and sync): Tansu took a follower's sync,
which carries no assignments, as the leader's, and formed a group in which
nobody owned a partition (2 of 5 runs of a churn of short-lived members).

And it keeps SCRAM credentials in the same engine, which 0.6.0 dropped, so a
SASL login can succeed (patch_scram_credentials, docs/decisions/0044).

Usage: patch.py <tansu-storage source dir> <tansu source dir> <tansu-broker source dir>
"""
import pathlib
import sys

storage, tansu, broker = (pathlib.Path(p) for p in sys.argv[1:4])


def replace_once(path, old, new, what):
    text = path.read_text()
    if text.count(old) != 1:
        sys.exit(f"patch.py: {what} was not found exactly once in {path}; is this Tansu 0.6.0?")
    path.write_text(text.replace(old, new))


dynostore = storage / "src" / "dynostore.rs"
text = dynostore.read_text()
old = "        for offset in offsets.split_off(&offset) {\n"
new = (
    "        // sluice patch: start at the batch holding `offset`, as Kafka does.\n"
    "        let first = offsets.range(..=offset).next_back().copied().unwrap_or(offset);\n"
    "        for offset in offsets.split_off(&first) {\n"
)
if text.count(old) != 1:
    sys.exit(f"patch.py: the fetch loop was not found exactly once in {dynostore}; is this Tansu 0.6.0?")
dynostore.write_text(text.replace(old, new))

# Commit metadata: a storage call that returns it (only the in-memory engine
# answers; the others keep Tansu's empty metadata).
lib = storage / "src" / "lib.rs"
replace_once(
    lib,
    "    /// Fetch all committed offsets in a consumer group.\n"
    "    async fn committed_offset_topitions(&self, group_id: &str) -> Result<BTreeMap<Topition, i64>>;\n",
    "    /// Fetch all committed offsets in a consumer group.\n"
    "    async fn committed_offset_topitions(&self, group_id: &str) -> Result<BTreeMap<Topition, i64>>;\n"
    "\n"
    "    /// sluice patch: the metadata committed with each offset (missing: none).\n"
    "    async fn offset_fetch_metadata(\n"
    "        &self,\n"
    "        group_id: Option<&str>,\n"
    "        topics: &[Topition],\n"
    "    ) -> Result<BTreeMap<Topition, String>> {\n"
    "        let _ = (group_id, topics);\n"
    "        Ok(BTreeMap::new())\n"
    "    }\n",
    "the Storage trait's committed_offset_topitions",
)
replace_once(
    lib,
    "    #[instrument(skip_all)]\n    async fn offset_fetch(\n",
    "    async fn offset_fetch_metadata(\n"
    "        &self,\n"
    "        group_id: Option<&str>,\n"
    "        topics: &[Topition],\n"
    "    ) -> Result<BTreeMap<Topition, String>> {\n"
    "        match self {\n"
    "            #[cfg(feature = \"dynostore\")]\n"
    "            Self::DynoStore(engine) => engine.offset_fetch_metadata(group_id, topics).await,\n"
    "            #[allow(unreachable_patterns)]\n"
    "            _ => Ok(BTreeMap::new()),\n"
    "        }\n"
    "    }\n"
    "\n"
    "    #[instrument(skip_all)]\n    async fn offset_fetch(\n",
    "StorageContainer's offset_fetch",
)
replace_once(
    dynostore,
    "    async fn offset_fetch(\n        &self,\n        group_id: Option<&str>,\n",
    "    async fn offset_fetch_metadata(\n"
    "        &self,\n"
    "        group_id: Option<&str>,\n"
    "        topics: &[Topition],\n"
    "    ) -> Result<BTreeMap<Topition, String>> {\n"
    "        let mut notes = BTreeMap::new();\n"
    "        let Some(group_id) = group_id else { return Ok(notes) };\n"
    "        for topition in topics {\n"
    "            let location = Path::from(format!(\n"
    "                \"clusters/{}/groups/consumers/{}/offsets/{}/partitions/{:0>10}.json\",\n"
    "                self.cluster, group_id, topition.topic, topition.partition,\n"
    "            ));\n"
    "            if let Ok(get_result) = self.object_store.get(&location).await {\n"
    "                if let Ok(encoded) = get_result.bytes().await {\n"
    "                    if let Ok(commit) = serde_json::from_slice::<OffsetCommitRequest>(&encoded[..]) {\n"
    "                        if let Some(metadata) = commit.metadata {\n"
    "                            _ = notes.insert(topition.to_owned(), metadata);\n"
    "                        }\n"
    "                    }\n"
    "                }\n"
    "            }\n"
    "        }\n"
    "        Ok(notes)\n"
    "    }\n"
    "\n"
    "    async fn offset_fetch(\n        &self,\n        group_id: Option<&str>,\n",
    "dynostore's offset_fetch",
)

admin = broker / "src" / "coordinator" / "group" / "administrator.rs"
# OffsetFetch before v8 (one group) and from v8 (groups): answer the metadata.
replace_once(
    admin,
    "            self.storage\n                .offset_fetch(group_id, topics.deref(), require_stable)\n",
    "            let notes = self\n"
    "                .storage\n"
    "                .offset_fetch_metadata(group_id, topics.deref())\n"
    "                .await\n"
    "                .unwrap_or_default();\n"
    "            self.storage\n                .offset_fetch(group_id, topics.deref(), require_stable)\n",
    "the OffsetFetch (before v8) storage call",
)
text = admin.read_text()
old = '.metadata(Some("".into()))\n                                                        .error_code(ErrorCode::None.into()),'
if text.count(old) != 1:
    sys.exit(f"patch.py: the OffsetFetch (before v8) metadata was not found exactly once in {admin}")
admin.write_text(text.replace(old, '.metadata(Some(notes.get(topition).cloned().unwrap_or_default()))\n                                                        .error_code(ErrorCode::None.into()),'))
replace_once(
    admin,
    "                let response = if let Some(topics) = group.topics.as_ref().map(|topics| {\n",
    "                let notes = match self.storage.committed_offset_topitions(&group.group_id).await {\n"
    "                    Ok(all) => {\n"
    "                        let all: Vec<Topition> = all.into_keys().collect();\n"
    "                        self.storage\n"
    "                            .offset_fetch_metadata(Some(group.group_id.as_str()), &all)\n"
    "                            .await\n"
    "                            .unwrap_or_default()\n"
    "                    }\n"
    "                    Err(_) => BTreeMap::new(),\n"
    "                };\n"
    "                let response = if let Some(topics) = group.topics.as_ref().map(|topics| {\n",
    "the OffsetFetch (v8) group loop",
)
replace_once(admin, ".metadata(None)", ".metadata(notes.get(topition).cloned())", "the OffsetFetch (v8) metadata")

# Fencing: a formed group refuses commits from members it no longer has or
# from an older generation.
text = admin.read_text()
formed = text.index("impl<O> Group for Inner<O, Formed>")
old = (
    "        match self.commit_offset(detail).await {\n"
    "            Ok(body) => (self, body),\n"
    "            Err(reason) => {\n"
    "                debug!(?reason);\n"
)
at = text.index(old, formed)
new = (
    "        // sluice patch: fence commits by member and generation, as Kafka does.\n"
    "        let fence = match (detail.generation_id_or_member_epoch, detail.member_id) {\n"
    "            (Some(generation), member) if generation >= 0 || !self.members.is_empty() => {\n"
    "                if !self.members.contains_key(member.unwrap_or_default()) {\n"
    "                    Some(ErrorCode::UnknownMemberId)\n"
    "                } else if generation != self.generation_id {\n"
    "                    Some(ErrorCode::IllegalGeneration)\n"
    "                } else {\n"
    "                    None\n"
    "                }\n"
    "            }\n"
    "            _ => None,\n"
    "        };\n"
    "        let outcome = match fence {\n"
    "            Some(code) => Err(code),\n"
    "            None => self.commit_offset(detail).await.map_err(|reason| {\n"
    "                debug!(?reason);\n"
    "                ErrorCode::UnknownMemberId\n"
    "            }),\n"
    "        };\n"
    "        match outcome {\n"
    "            Ok(body) => (self, body),\n"
    "            Err(code) => {\n"
)
text = text[:at] + new + text[at + len(old):]
code_at = text.index("ErrorCode::UnknownMemberId.into(),", at + len(new))
text = text[:code_at] + "code.into()," + text[code_at + len("ErrorCode::UnknownMemberId.into(),"):]
admin.write_text(text)


def patch_scram_credentials(dynostore):
    """SCRAM users in the in-memory/S3 engine (dynostore).

    Tansu 0.6.0's dynostore accepts AlterUserScramCredentials (`tansu user
    create`) and drops the credential, so a broker started with
    `--authentication` answers every SCRAM login `unknown-user`
    (docs/decisions/0023). The patch keeps each credential as an object
    next to the engine's other metadata, so a broker on the same storage
    (s3://) finds it after a restart with authentication on
    (docs/decisions/0044).
    """
    text = dynostore.read_text()
    old = (
        "    async fn delete_user_scram_credential(\n"
        "        &self,\n"
        "        _user: &str,\n"
        "        _mechanism: ScramMechanism,\n"
        "    ) -> Result<()> {\n"
        "        Ok(())\n"
        "    }\n"
        "\n"
        "    async fn upsert_user_scram_credential(\n"
        "        &self,\n"
        "        _user: &str,\n"
        "        _mechanism: ScramMechanism,\n"
        "        _credential: ScramCredential,\n"
        "    ) -> Result<()> {\n"
        "        Ok(())\n"
        "    }\n"
        "\n"
        "    async fn user_scram_credential(\n"
        "        &self,\n"
        "        _user: &str,\n"
        "        _mechanism: ScramMechanism,\n"
        "    ) -> Result<Option<ScramCredential>> {\n"
        "        Ok(None)\n"
        "    }\n"
    )
    new = (
        "    async fn delete_user_scram_credential(\n"
        "        &self,\n"
        "        user: &str,\n"
        "        mechanism: ScramMechanism,\n"
        "    ) -> Result<()> {\n"
        "        match self.object_store.delete(&self.sluice_scram_location(user, mechanism)).await {\n"
        "            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),\n"
        "            Err(error) => Err(error.into()),\n"
        "        }\n"
        "    }\n"
        "\n"
        "    async fn upsert_user_scram_credential(\n"
        "        &self,\n"
        "        user: &str,\n"
        "        mechanism: ScramMechanism,\n"
        "        credential: ScramCredential,\n"
        "    ) -> Result<()> {\n"
        "        // sluice patch: keep the credential (0.6.0 dropped it).\n"
        "        let stored: (Vec<u8>, i32, Vec<u8>, Vec<u8>) = (\n"
        "            credential.salt.to_vec(),\n"
        "            credential.iterations,\n"
        "            credential.stored_key.to_vec(),\n"
        "            credential.server_key.to_vec(),\n"
        "        );\n"
        "        let payload = serde_json::to_vec(&stored).map(Bytes::from).map(PutPayload::from)?;\n"
        "        _ = self\n"
        "            .object_store\n"
        "            .put(&self.sluice_scram_location(user, mechanism), payload)\n"
        "            .await?;\n"
        "        Ok(())\n"
        "    }\n"
        "\n"
        "    async fn user_scram_credential(\n"
        "        &self,\n"
        "        user: &str,\n"
        "        mechanism: ScramMechanism,\n"
        "    ) -> Result<Option<ScramCredential>> {\n"
        "        let location = self.sluice_scram_location(user, mechanism);\n"
        "        let encoded = match self.object_store.get(&location).await {\n"
        "            Ok(get_result) => get_result.bytes().await?,\n"
        "            Err(object_store::Error::NotFound { .. }) => return Ok(None),\n"
        "            Err(error) => return Err(error.into()),\n"
        "        };\n"
        "        let (salt, iterations, stored_key, server_key): (Vec<u8>, i32, Vec<u8>, Vec<u8>) =\n"
        "            serde_json::from_slice(&encoded[..])?;\n"
        "        Ok(Some(ScramCredential {\n"
        "            salt: Bytes::from(salt),\n"
        "            iterations,\n"
        "            stored_key: Bytes::from(stored_key),\n"
        "            server_key: Bytes::from(server_key),\n"
        "        }))\n"
        "    }\n"
    )
    if text.count(old) != 1:
        sys.exit(f"patch.py: the SCRAM credential stubs were not found exactly once in {dynostore}; is this Tansu 0.6.0?")
    text = text.replace(old, new)
    # A helper on DynoStore itself (not the Storage trait) naming the object.
    anchor = "    fn encode(&self, deflated: deflated::Batch) -> Result<PutPayload> {\n"
    if text.count(anchor) != 1:
        sys.exit(f"patch.py: DynoStore::encode was not found exactly once in {dynostore}; is this Tansu 0.6.0?")
    helper = (
        "    fn sluice_scram_location(&self, user: &str, mechanism: ScramMechanism) -> Path {\n"
        "        let mechanism = match mechanism {\n"
        "            ScramMechanism::Scram256 => \"SCRAM-SHA-256\",\n"
        "            ScramMechanism::Scram512 => \"SCRAM-SHA-512\",\n"
        "        };\n"
        "        Path::from(format!(\"clusters/{}/scram/{}/{}.json\", self.cluster, mechanism, user))\n"
        "    }\n"
        "\n"
    )
    dynostore.write_text(text.replace(anchor, helper + anchor))


patch_scram_credentials(dynostore)


def patch_group_leadership(admin):
    """A heartbeat to a formed group only notices expired members (the caller's
    missed_heartbeat then re-forms the group without a leader), and a forming
    group's join drops a leader that is no longer a member."""
    text = admin.read_text()
    formed = text.index("impl<O> Group for Inner<O, Formed>")
    old = "        if self.missed_heartbeat(group_id, now) || (generation_id < self.generation_id) {\n"
    at = text.index(old, formed)
    new = (
        "        // sluice patch: notice expired members, leave removing them (and the\n"
        "        // leader with them) to Wrapper::missed_heartbeat, which re-forms the group.\n"
        "        let session = u128::try_from(self.session_timeout_ms).unwrap_or(45_000);\n"
        "        let expired = self.members.values().any(|member| {\n"
        "            member.last_contact.is_none_or(|last_contact| {\n"
        "                now.duration_since(last_contact).unwrap_or_default().as_millis() > session\n"
        "            })\n"
        "        });\n"
        "        if expired || (generation_id < self.generation_id) {\n"
    )
    admin.write_text(text[:at] + new + text[at + len(old):])
    replace_once(
        admin,
        "        debug!(?member_id, ?self.members);\n\n        if self.state.leader.is_none() {\n",
        "        debug!(?member_id, ?self.members);\n\n"
        "        // sluice patch: a leader that left or expired leads no more.\n"
        "        if self.state.leader.as_ref().is_some_and(|leader| !self.members.contains_key(leader)) {\n"
        "            _ = self.state.leader.take();\n"
        "        }\n\n"
        "        if self.state.leader.is_none() {\n",
        "the forming group's leader election",
    )
    # A forming group without a leader (it expired between a member's join
    # and its sync) took any member's sync as the leader's: a follower's empty
    # assignment formed the group and nobody got a partition, for good.
    replace_once(
        admin,
        "            .is_some_and(|leader_id| member_id != leader_id.as_str())\n",
        "            // sluice patch: only the leader's sync forms the group.\n"
        "            .is_none_or(|leader_id| member_id != leader_id.as_str())\n",
        "the forming group's sync leader check",
    )


patch_group_leadership(admin)

manifest = tansu / "Cargo.toml"
manifest.write_text(
    manifest.read_text()
    + f'\n[patch.crates-io]\ntansu-storage = {{ path = "{storage.resolve()}" }}\n'
    + f'tansu-broker = {{ path = "{broker.resolve()}" }}\n'
)
print("patched", dynostore, lib, admin, "and", manifest)
