// The sink both test plugins export (included by each, with its own
// `CLASS`): by a record's value, it reports a status message or fails the
// record with error details, so the tests see what reaches the worker.

pub struct DetailsSink;
pub struct DetailsTask {
    context: SinkContext,
}

impl SinkConnector for DetailsSink {
    type Task = DetailsTask;
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo { class: CLASS, aliases: &[], version: "0.0.0", documentation: "Says things on demand." }
    }
    fn config_def(&self) -> ConfigDef {
        ConfigDef::new()
    }
    fn create_task(&self, _: &ConnectorConfig, _: Host, context: SinkContext) -> Result<DetailsTask, ConnectorError> {
        Ok(DetailsTask { context })
    }
}

impl SinkTask for DetailsTask {
    /// `status:TEXT` reports TEXT as the status message, `status-clear`
    /// clears it, `reject` fails the record as Rejected with three details.
    fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        let mut outcome = PutOutcome::accepted();
        for (i, record) in records.iter().enumerate() {
            let value = record.value().map(String::from_utf8_lossy).unwrap_or_default();
            if let Some(text) = value.strip_prefix("status:") {
                self.context.report_status(Some(text));
            } else if value == "status-clear" {
                self.context.report_status(None);
            } else if value == "reject" {
                outcome.fail_with_details(
                    i,
                    ConnectorError::rejected("TEST_CODE: refused by the test [fields: a, b]"),
                    &[("code", "TEST_CODE"), ("message", "refused by the test"), ("fields", "a,b")],
                );
            }
        }
        Ok(outcome)
    }
    fn pre_commit(&mut self, delivered: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        Ok(delivered.to_vec())
    }
}
