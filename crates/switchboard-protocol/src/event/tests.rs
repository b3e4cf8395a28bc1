//! Encoding server frames: the fields each frame carries.

use super::*;

#[test]
fn frames_carry_their_type_and_ref() {
    let reference = RefValue::Number(3);
    let bytes = ServerFrame::Error {
        reference: Some(&reference),
        code: ErrorCode::RateLimited,
        message: "slow down",
        retry_after_ms: Some(50),
    }
    .encode();
    let value: serde_json::Value = serde_json::from_slice(&bytes.payload()).unwrap();
    assert_eq!(value["type"], "error");
    assert_eq!(value["ref"], 3);
    assert_eq!(value["code"], "rate_limited");
    assert_eq!(value["retry_after_ms"], 50);
}

#[test]
fn a_message_frame_is_the_message_view_with_a_type() {
    let view = MessageView {
        conv: "dm:a:b",
        id: "1",
        seq: 4,
        from: "a",
        to: Some("b"),
        room: None,
        text: "<b>x</b>",
        ts: 9,
        key: Some("k-1"),
        kind: None,
        target: None,
        reply_to: None,
        reply: None,
        edited_at: None,
        deleted: false,
        reactions: &[],
        changed_seq: 0,
    };
    let value: serde_json::Value = serde_json::from_slice(&ServerFrame::Message(&view).encode().payload()).unwrap();
    assert_eq!(value["type"], "message");
    assert_eq!(value["key"], "k-1");
    assert_eq!(value["seq"], 4);
    assert!(value.get("room").is_none());
    for absent in ["kind", "target", "reply_to", "reply", "edited_at", "deleted", "reactions", "changed_seq"] {
        assert!(value.get(absent).is_none(), "{absent} shows on a plain message");
    }
    let reactions = [Reaction { emoji: "👍".into(), users: vec!["b".into()] }];
    let change = MessageView { kind: Some("react"), target: Some(2), reactions: &reactions, ..view };
    let value: serde_json::Value = serde_json::from_slice(&ServerFrame::Message(&change).encode().payload()).unwrap();
    assert_eq!(value["kind"], "react");
    assert_eq!(value["target"], 2);
    assert_eq!(value["reactions"][0]["users"][0], "b");
}

#[test]
fn fitting_counts_what_an_answer_can_hold_from_either_end() {
    let texts: Vec<String> = (0..10).map(|i| "x".repeat(1000 * (i + 1))).collect();
    let all = ENVELOPE_BYTES + texts.iter().map(|t| encoded_len(t) + 1).sum::<usize>();
    assert_eq!(fitting_prefix(&texts, all), 10);
    assert_eq!(fitting_prefix(&texts, all - 1), 9, "the last one no longer fits");
    assert_eq!(fitting_suffix(&texts, ENVELOPE_BYTES + 10_003), 1, "only the largest, from the back");
    assert_eq!(fitting_prefix(&texts, 0), 1, "one entry always goes");
    assert_eq!(fitting_prefix::<String>(&[], 0), 0);
    assert_eq!(encoded_len(&"\u{1}"), 8, "a control character escapes to six bytes");
}

#[test]
fn a_preview_is_cut_at_a_character_count_never_inside_a_character() {
    let long = "é".repeat(PREVIEW_CHARS + 1);
    assert_eq!(LastMessageView::new(1, "a", &long).text, format!("{}…", "é".repeat(PREVIEW_CHARS)));
    let exact = "é".repeat(PREVIEW_CHARS);
    assert_eq!(LastMessageView::new(1, "a", &exact).text, exact);
}

#[test]
fn durations_read_like_seed_001() {
    assert_eq!(human_duration(3723), "1h 2m 3s");
    assert_eq!(human_duration(62), "1m 2s");
    assert_eq!(human_duration(5), "5s");
}
