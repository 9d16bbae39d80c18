//! Input rules for names and texts, shared by Socket.IO handlers and HTTP routes.
//!
//! Lengths count characters (not bytes) after trimming, so Korean and emoji are
//! measured as a person would; control characters are refused everywhere
//! (a message may still hold line breaks and tabs).

use super::protocol::{ApiError, ErrorCode};

fn check(
    raw: &str,
    max: u64,
    allow_newlines: bool,
    code: ErrorCode,
    what: &str,
) -> Result<String, ApiError> {
    let text = raw.trim();
    let chars = text.chars().count() as u64;
    if chars == 0 {
        return Err(ApiError::new(code, format!("{what} must not be empty")));
    }
    if chars > max {
        return Err(ApiError::new(
            code,
            format!("{what} is too long ({chars} characters, at most {max})"),
        ));
    }
    let bad = |c: char| c.is_control() && !(allow_newlines && matches!(c, '\n' | '\r' | '\t'));
    if text.chars().any(bad) {
        return Err(ApiError::new(
            code,
            format!("{what} must not contain control characters"),
        ));
    }
    Ok(text.to_string())
}

pub fn room_name(raw: &str, max: u64) -> Result<String, ApiError> {
    check(raw, max, false, ErrorCode::InvalidRoom, "room name")
}

pub fn nickname(raw: &str, max: u64) -> Result<String, ApiError> {
    check(raw, max, false, ErrorCode::InvalidNickname, "nickname")
}

pub fn message(raw: &str, max: u64) -> Result<String, ApiError> {
    let text = check(raw, max, true, ErrorCode::InvalidMessage, "message")?;
    Ok(text.replace("\r\n", "\n").replace('\r', "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_characters_after_trimming() {
        assert_eq!(
            room_name("  로비  ", 2).map_err(|e| e.code),
            Ok("로비".to_string())
        );
        assert_eq!(
            room_name("로비방", 2).map_err(|e| e.code),
            Err(ErrorCode::InvalidRoom)
        );
        assert_eq!(
            nickname("   ", 5).map_err(|e| e.code),
            Err(ErrorCode::InvalidNickname)
        );
        assert_eq!(
            nickname("🦀🦀", 2).map_err(|e| e.code),
            Ok("🦀🦀".to_string())
        );
    }

    #[test]
    fn control_characters_refused_but_messages_keep_line_breaks() {
        assert!(room_name("a\u{0}b", 64).is_err());
        assert!(nickname("a\nb", 64).is_err());
        assert_eq!(
            message("one\ntwo", 64).map_err(|e| e.code),
            Ok("one\ntwo".to_string())
        );
        assert!(message("bell\u{7}", 64).is_err());
    }
}
