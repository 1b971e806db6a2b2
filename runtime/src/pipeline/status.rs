//! A task's status message: what a running task says about itself
//! (`SinkContext::report_status`), shown as `message` in the REST status
//! beside `"state": "RUNNING"` (docs/decisions/0043). The task sets it from
//! its own thread; the reconciler publishes it with the task's state.

use std::sync::{Arc, Mutex};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{ROption, RStr},
};
use connector_api::ext::{FfiTaskStatus, FfiTaskStatusBox, FfiTaskStatus_TO};

/// Longest message kept, in characters: it travels in every status record
/// of the task and in REST answers.
pub const MAX_MESSAGE_CHARS: usize = 1_000;

/// The message as shown: trimmed, cut to [`MAX_MESSAGE_CHARS`] with an
/// ellipsis, `None` when empty.
pub fn shown(message: Option<&str>) -> Option<String> {
    let message = message?.trim();
    if message.is_empty() {
        return None;
    }
    let mut chars = message.chars();
    let head: String = chars.by_ref().take(MAX_MESSAGE_CHARS).collect();
    Some(if chars.next().is_some() { format!("{head}…") } else { head })
}

/// The message slot a task writes and the reconciler reads. Cheap to clone.
#[derive(Clone, Default)]
pub struct StatusMessage(Arc<Mutex<Option<String>>>);

impl StatusMessage {
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn set(&self, message: Option<&str>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = shown(message);
    }
    /// The line handed to the plugin.
    pub fn to_ffi(&self) -> FfiTaskStatusBox {
        FfiTaskStatus_TO::from_value(self.clone(), TD_Opaque)
    }
}

impl FfiTaskStatus for StatusMessage {
    fn report(&self, message: ROption<RStr<'_>>) {
        self.set(message.into_option().map(|m| m.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_trimmed_cut_and_cleared_when_empty() {
        assert_eq!(shown(Some("  paused until 00:00 UTC \n")).as_deref(), Some("paused until 00:00 UTC"));
        assert_eq!(shown(Some("   ")), None);
        assert_eq!(shown(None), None);
        let long = "é".repeat(MAX_MESSAGE_CHARS + 5);
        let cut = shown(Some(&long)).unwrap();
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1, "cut on a character, with an ellipsis");
        assert!(cut.ends_with('…'));
        let exact = "x".repeat(MAX_MESSAGE_CHARS);
        assert_eq!(shown(Some(&exact)).as_deref(), Some(exact.as_str()), "nothing cut at the limit");
    }

    #[test]
    fn the_plugin_line_sets_and_clears_the_slot() {
        let slot = StatusMessage::default();
        let line = slot.to_ffi();
        line.report(ROption::RSome("paused".into()));
        assert_eq!(slot.get().as_deref(), Some("paused"));
        line.report(ROption::RNone);
        assert_eq!(slot.get(), None);
    }
}
