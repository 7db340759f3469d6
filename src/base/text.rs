//! Messages as the operator shows them: bounded in bytes, with no control characters.

/// Bytes of an error message on a condition, an event or a history entry (an Event's note is
/// limited to 1,024 characters by the API server).
pub const MAX_MESSAGE_BYTES: usize = 1000;

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut with an ellipsis, and
/// replaces control characters so that a message cannot forge log lines.
pub fn bound(s: &str, max: usize) -> String {
    let clean: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let clean = clean.trim();
    if clean.len() <= max {
        return clean.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &clean[..end])
}
