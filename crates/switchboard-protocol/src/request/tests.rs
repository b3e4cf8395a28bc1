//! Parsing requests: the fields each type takes and the errors of each.

use super::*;

#[test]
fn parses_a_send_with_ref_and_key() {
    let frame = parse(r#"{"type":"send","ref":7,"to":"Bob","text":"hi","key":"k1"}"#).unwrap();
    assert_eq!(frame.reference, Some(RefValue::Number(7)));
    assert_eq!(
        frame.request,
        Request::Send { target: Target::User("bob".into()), text: "hi".into(), key: Some("k1".into()), reply_to: None }
    );
}

#[test]
fn parses_changes_and_replies() {
    let frame = parse(r#"{"type":"send","room":"r","text":"yes","reply_to":4}"#).unwrap();
    let Request::Send { reply_to, .. } = frame.request else { panic!("not a send") };
    assert_eq!(reply_to, Some(4));
    let frame = parse(r#"{"type":"edit","to":"bob","seq":3,"text":"fixed"}"#).unwrap();
    assert_eq!(frame.request, Request::Edit { target: Target::User("bob".into()), seq: 3, text: "fixed".into() });
    assert_eq!(parse(r#"{"type":"edit","to":"bob","text":"x"}"#).unwrap_err().code, ErrorCode::InvalidField);
    let frame = parse(r#"{"type":"delete","room":"r","seq":3}"#).unwrap();
    assert_eq!(frame.request, Request::Delete { target: Target::Room("r".into()), seq: 3 });
    let frame = parse(r#"{"type":"react","room":"r","seq":3,"emoji":""}"#).unwrap();
    assert_eq!(frame.request, Request::React { target: Target::Room("r".into()), seq: 3, emoji: String::new() });
    let long = "👍".repeat(9);
    let error = parse(&format!(r#"{{"type":"react","room":"r","seq":3,"emoji":"{long}"}}"#)).unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidField);
    assert_eq!(
        parse(r#"{"type":"react","room":"r","seq":3,"emoji":"a b"}"#).unwrap_err().code,
        ErrorCode::InvalidField
    );
    assert_eq!(parse(r#"{"type":"react","room":"r","seq":3}"#).unwrap_err().code, ErrorCode::InvalidField);
}

#[test]
fn wrong_field_type_is_invalid_field_and_keeps_the_ref() {
    let error = parse(r#"{"type":"send","ref":"a","to":5,"text":"hi"}"#).unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidField);
    assert_eq!(error.reference, Some(RefValue::Text("a".into())));
}

#[test]
fn malformed_json_is_bad_frame() {
    assert_eq!(parse("{nope").unwrap_err().code, ErrorCode::BadFrame);
    assert_eq!(parse("[1,2]").unwrap_err().code, ErrorCode::BadFrame);
    assert_eq!(parse(r#"["ping"]"#).unwrap_err().code, ErrorCode::BadFrame);
}

#[test]
fn unknown_type_and_missing_fields_are_named() {
    let error = parse(r#"{"type":"fly"}"#).unwrap_err();
    assert_eq!(error.code, ErrorCode::UnknownType);
    let error = parse(r#"{"type":"send","to":"bob"}"#).unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidField);
    assert!(error.message.contains("text"));
    let error = parse(r#"{"ref":1}"#).unwrap_err();
    assert!(error.message.contains("type"));
}

#[test]
fn cursors_and_protocol_version_are_checked() {
    let frame = parse(r#"{"type":"resume","token":"t","cursors":{"dm:b:a":3},"presence":false}"#).unwrap();
    let Request::Resume { options, .. } = frame.request else { panic!("not a resume") };
    assert!(!options.presence);
    assert_eq!(options.cursors.get(&ConvId::direct("a", "b")), Some(&3));
    assert_eq!(parse(r#"{"type":"resume","token":"t","cursors":{"x":3}}"#).unwrap_err().code, ErrorCode::InvalidField);
    assert_eq!(parse(r#"{"type":"ping","protocol":9}"#).unwrap_err().code, ErrorCode::UnsupportedProtocol);
}

#[test]
fn listings_take_a_cursor_of_their_own_kind() {
    let frame = parse(r#"{"type":"rooms","cursor":"Lobby","limit":5}"#).unwrap();
    assert_eq!(frame.request, Request::Rooms { after: Some("lobby".into()), limit: Some(5) });
    assert_eq!(parse(r#"{"type":"rooms"}"#).unwrap().request, Request::Rooms { after: None, limit: None });
    let frame = parse(r#"{"type":"conversations","cursor":"17:dm:b:a"}"#).unwrap();
    assert_eq!(frame.request, Request::Conversations { after: Some("17:dm:a:b".into()), limit: None });
    assert_eq!(parse(r#"{"type":"conversations","cursor":"x"}"#).unwrap_err().code, ErrorCode::InvalidField);
    let by_id = parse(r#"{"type":"conversations","cursor":"dm:a:b"}"#).unwrap_err();
    assert_eq!(by_id.code, ErrorCode::InvalidField, "an id alone does not say where in the activity order");
    let frame = parse(r#"{"type":"users","prefix":" Bo ","cursor":"bob"}"#).unwrap();
    assert_eq!(frame.request, Request::Users { prefix: "bo".into(), after: Some("bob".into()), limit: None });
    let frame = parse(r#"{"type":"users","prefix":""}"#).unwrap();
    assert_eq!(frame.request, Request::Users { prefix: String::new(), after: None, limit: None });
    assert_eq!(parse(r#"{"type":"users","prefix":"b b"}"#).unwrap_err().code, ErrorCode::InvalidName);
    assert_eq!(parse(r#"{"type":"users","prefix":".b"}"#).unwrap_err().code, ErrorCode::InvalidName);
    let frame = parse(r#"{"type":"members","room":"r","cursor":"bob"}"#).unwrap();
    assert_eq!(frame.request, Request::Members { room: "r".into(), after: Some("bob".into()), limit: None });
}

#[test]
fn moderation_requests_name_a_room_and_a_user() {
    let frame = parse(r#"{"type":"ban","room":"Lobby","user":"Bob"}"#).unwrap();
    assert_eq!(frame.request, Request::Moderate { action: ModAction::Ban, room: "lobby".into(), user: "bob".into() });
    assert_eq!(parse(r#"{"type":"mute","room":"lobby"}"#).unwrap_err().code, ErrorCode::InvalidField);
    let frame = parse(r#"{"type":"create_room","room":"attic","private":true}"#).unwrap();
    assert_eq!(frame.request, Request::CreateRoom { room: "attic".into(), private: true });
    assert_eq!(parse(r#"{"type":"block","user":"Eve"}"#).unwrap().request, Request::Block { user: "eve".into() });
}

#[test]
fn a_target_is_a_user_or_a_room_never_both() {
    assert_eq!(parse(r#"{"type":"typing","to":"a","room":"b"}"#).unwrap_err().code, ErrorCode::InvalidField);
    let frame = parse(r#"{"type":"typing","room":"Lobby"}"#).unwrap();
    assert_eq!(frame.request, Request::Typing { target: Target::Room("lobby".into()) });
}
