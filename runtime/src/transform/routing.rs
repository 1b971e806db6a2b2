//! Durable offsets of renamed topics. A sink reports in `pre_commit` what is
//! durable under the topic names it was handed; when RegexRouter or
//! TimestampRouter renamed them, those are not the partitions the task
//! consumes. This maps the reports back: a consumed partition's records are
//! durable up to its lowest record the sink has not yet reported, whatever
//! topics they were routed to (several consumed topics may feed one routed
//! topic, and one consumed topic may feed several).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

#[derive(Debug, Default)]
struct Outstanding {
    /// Records handed to the sink and not reported durable: offset → routed topic.
    records: BTreeMap<i64, Arc<str>>,
    /// One past the highest offset handed.
    next: i64,
}

#[derive(Debug, Default)]
pub struct RoutedOffsets {
    /// Consumed topic → partition → outstanding records.
    consumed: HashMap<String, HashMap<i32, Outstanding>>,
    /// Routed topic names, shared by the records that carry them.
    names: HashSet<Arc<str>>,
}

impl RoutedOffsets {
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(n.clone());
        n
    }

    /// The record at (topic, partition, offset) was handed to the sink as `routed`.
    pub fn handed(&mut self, topic: &str, partition: i32, offset: i64, routed: &str) {
        let routed = self.intern(routed);
        if !self.consumed.contains_key(topic) {
            self.consumed.insert(topic.to_string(), HashMap::new());
        }
        if let Some(partitions) = self.consumed.get_mut(topic) {
            let o = partitions.entry(partition).or_default();
            o.records.insert(offset, routed);
            o.next = o.next.max(offset + 1);
        }
    }

    /// The sink did not take the record (it failed in `put`): it no longer
    /// waits for the sink.
    pub fn withdrawn(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(o) = self.consumed.get_mut(topic).and_then(|p| p.get_mut(&partition)) {
            o.records.remove(&offset);
        }
    }

    /// The sink reports every record it was handed as (`routed`, `partition`)
    /// below `below` durable. Returns, per consumed topic it touched, the
    /// offset below which all of that partition's handed records are durable.
    pub fn durable(&mut self, routed: &str, partition: i32, below: i64) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for (topic, partitions) in self.consumed.iter_mut() {
            let Some(o) = partitions.get_mut(&partition) else { continue };
            let before = o.records.len();
            o.records.retain(|offset, to| !(*offset < below && &**to == routed));
            if o.records.len() != before {
                let safe = o.records.keys().next().copied().unwrap_or(o.next);
                out.push((topic.clone(), safe));
            }
        }
        out
    }

    /// The partition was revoked.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        if let Some(p) = self.consumed.get_mut(topic) {
            p.remove(&partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RoutedOffsets;

    #[test]
    fn one_topic_routed_to_several_is_durable_only_where_every_route_is() {
        let mut r = RoutedOffsets::default();
        r.handed("orders", 0, 0, "orders-day1");
        r.handed("orders", 0, 1, "orders-day2");
        r.handed("orders", 0, 2, "orders-day1");
        assert_eq!(r.durable("orders-day1", 0, 3), vec![("orders".to_string(), 1)], "offset 1 is not durable yet");
        assert_eq!(r.durable("orders-day2", 0, 2), vec![("orders".to_string(), 3)]);
        assert!(r.durable("orders-day2", 1, 9).is_empty(), "another partition");
    }

    #[test]
    fn several_topics_routed_to_one_and_withdrawn_records() {
        let mut r = RoutedOffsets::default();
        r.handed("a", 0, 5, "all");
        r.handed("b", 0, 100, "all");
        r.handed("b", 0, 101, "all");
        r.withdrawn("b", 0, 101);
        let mut got = r.durable("all", 0, 101);
        got.sort();
        assert_eq!(got, vec![("a".to_string(), 6), ("b".to_string(), 102)]);
        r.handed("a", 0, 6, "all");
        r.forget("a", 0);
        assert!(r.durable("all", 0, 7).is_empty());
    }
}
