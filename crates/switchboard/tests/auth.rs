//! Authentication: register, login, resume, JWT, open login, throttling, the login phase and logout.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard_testkit::{TestClient, TestServer};

fn assert_error(frame: &Value, code: &str) {
    assert_eq!(frame["type"], "error", "expected a {code} error: {frame}");
    assert_eq!(frame["code"], code, "{frame}");
}

fn jwt(secret: &str, sub: &str, exp: u64) -> String {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&header, &json!({"sub": sub, "exp": exp}), &key).expect("encode jwt")
}

fn in_an_hour() -> u64 {
    jsonwebtoken::get_current_timestamp() + 3600
}

#[tokio::test]
async fn a_registered_user_logs_in_again_with_the_password() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let registered = TestClient::register(&url, "Alice", "password1").await;
    assert_eq!(registered.session["user"], "alice", "names are normalised: {}", registered.session);
    assert_eq!(registered.session["resumed"], false);
    assert_eq!(registered.session["node"], "node-1");
    assert!(registered.session["conn"].is_u64(), "{}", registered.session);
    let token = registered.token();
    assert_eq!(token.len(), 43, "32 random bytes in URL-safe base64: {token}");
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
    let now_ms = jsonwebtoken::get_current_timestamp() * 1000;
    let expires_at = registered.session["expires_at"].as_u64().expect("expires_at");
    let thirty_days_ms = 30 * 24 * 3600 * 1000;
    assert!(expires_at.abs_diff(now_ms + thirty_days_ms) < 60_000, "the default lifetime is 30 days: {expires_at}");

    let mut again = TestClient::login(&url, "alice", "password1").await;
    assert_eq!(again.session["user"], "alice");
    assert_eq!(again.session["resumed"], false);
    assert_ne!(again.token(), registered.token(), "every password login issues a new token");
    let whoami = again.request(json!({"type": "whoami"})).await;
    assert_eq!(whoami["user"], "alice", "{whoami}");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_both_get_auth_failed() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    TestClient::register(&url, "alice", "password1").await;

    let mut client = TestClient::connect(&url).await;
    let wrong = client.request(json!({"type": "login", "username": "alice", "password": "password2"})).await;
    assert_error(&wrong, "auth_failed");
    let unknown = client.request(json!({"type": "login", "username": "nobody", "password": "password1"})).await;
    assert_error(&unknown, "auth_failed");
    assert_eq!(server.metric("switchboard_auth_failures_total").await, 2.0);
}

#[tokio::test]
async fn registering_a_taken_name_gets_user_exists() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    TestClient::register(&url, "alice", "password1").await;

    let mut client = TestClient::connect(&url).await;
    let taken = client.request(json!({"type": "register", "username": " ALICE ", "password": "another1"})).await;
    assert_error(&taken, "user_exists");
    // The original password still works: the failed register changed nothing.
    TestClient::login(&url, "alice", "password1").await;
}

#[tokio::test]
async fn a_password_outside_six_to_1024_characters_gets_invalid_password() {
    let server = TestServer::start().await;
    let mut client = TestClient::connect(&server.ws_url()).await;
    let short = client.request(json!({"type": "register", "username": "alice", "password": "12345"})).await;
    assert_error(&short, "invalid_password");
    let long = client.request(json!({"type": "register", "username": "alice", "password": "x".repeat(1025)})).await;
    assert_error(&long, "invalid_password");
    let ok = client.request(json!({"type": "register", "username": "alice", "password": "123456"})).await;
    assert_eq!(ok["type"], "session", "six characters are enough: {ok}");
}

#[tokio::test]
async fn a_user_name_that_breaks_the_rules_gets_invalid_name() {
    let server = TestServer::start().await;
    let mut client = TestClient::connect(&server.ws_url()).await;
    let too_long = "a".repeat(33);
    for name in ["bad name", "-alice", "", too_long.as_str(), "alice!"] {
        let answer = client.request(json!({"type": "register", "username": name, "password": "password1"})).await;
        assert_error(&answer, "invalid_name");
    }
}

#[tokio::test]
async fn resuming_with_the_session_token_keeps_the_user_across_a_reload() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let first = TestClient::register(&url, "alice", "password1").await;
    let token = first.token();
    let expires_at = first.session["expires_at"].clone();
    first.close().await;

    let mut reloaded = TestClient::resume(&url, &token, json!({})).await;
    assert_eq!(reloaded.session["user"], "alice");
    assert_eq!(reloaded.session["resumed"], true);
    assert_eq!(reloaded.token(), token, "resume keeps the token");
    assert_eq!(reloaded.session["expires_at"], expires_at, "resume does not extend the lifetime");
    reloaded.next_of_type("synced").await;
    let whoami = reloaded.request(json!({"type": "whoami"})).await;
    assert_eq!(whoami["user"], "alice");
}

#[tokio::test]
async fn resuming_with_an_expired_token_gets_invalid_token() {
    let server = TestServer::builder().chat(|c| c.session_ttl = Duration::ZERO).start().await;
    let url = server.ws_url();
    let alice = TestClient::register(&url, "alice", "password1").await;
    let mut client = TestClient::connect(&url).await;
    let answer = client.request(json!({"type": "resume", "token": alice.token()})).await;
    assert_error(&answer, "invalid_token");
}

#[tokio::test]
async fn registration_can_be_switched_off() {
    let server = TestServer::builder().chat(|c| c.registration = false).start().await;
    let mut client = TestClient::connect(&server.ws_url()).await;
    assert_eq!(client.hello["auth"], json!(["resume", "login"]));
    let answer = client.request(json!({"type": "register", "username": "alice", "password": "password1"})).await;
    assert_error(&answer, "auth_method_disabled");
}

#[tokio::test]
async fn resuming_with_a_garbage_token_gets_invalid_token() {
    let server = TestServer::start().await;
    let mut client = TestClient::connect(&server.ws_url()).await;
    let answer = client.request(json!({"type": "resume", "token": "not-a-token-at-all"})).await;
    assert_error(&answer, "invalid_token");
}

#[tokio::test]
async fn a_jwt_signed_with_the_secret_logs_in_and_creates_the_user() {
    let server = TestServer::builder().chat(|c| c.jwt_secret = Some("s".into())).start().await;
    let url = server.ws_url();
    let mut client = TestClient::connect(&url).await;
    assert!(client.hello["auth"].as_array().unwrap().contains(&json!("login_jwt")), "{}", client.hello);

    let answer = client.request(json!({"type": "login_jwt", "jwt": jwt("s", "Carol", in_an_hour())})).await;
    assert_eq!(answer["type"], "session", "{answer}");
    assert_eq!(answer["user"], "carol");
    assert_eq!(answer["resumed"], false);
    client.next_of_type("synced").await;

    // The user exists now: others can message them.
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    let ack = alice.request(json!({"type": "send", "to": "carol", "text": "hi"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(client.next_of_type("message").await["text"], "hi");

    // A user made by JWT has no password: a password login fails like a wrong password.
    let mut other = TestClient::connect(&url).await;
    let answer = other.request(json!({"type": "login", "username": "carol", "password": ""})).await;
    assert_error(&answer, "auth_failed");
}

#[tokio::test]
async fn a_jwt_with_another_secret_expired_or_bad_claims_gets_invalid_jwt() {
    let server = TestServer::builder().chat(|c| c.jwt_secret = Some("s".into())).start().await;
    let mut client = TestClient::connect(&server.ws_url()).await;

    let forged = client.request(json!({"type": "login_jwt", "jwt": jwt("not-s", "carol", in_an_hour())})).await;
    assert_error(&forged, "invalid_jwt");
    // Far beyond the 60 s leeway.
    let expired_at = jsonwebtoken::get_current_timestamp() - 3600;
    let expired = client.request(json!({"type": "login_jwt", "jwt": jwt("s", "carol", expired_at)})).await;
    assert_error(&expired, "invalid_jwt");
    let key = jsonwebtoken::EncodingKey::from_secret(b"s");
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    for claims in [
        json!({"sub": "carol"}),
        json!({"sub": "carol", "exp": in_an_hour(), "aud": "someone"}),
        json!({"sub": "not a name", "exp": in_an_hour()}),
    ] {
        let token = jsonwebtoken::encode(&header, &claims, &key).expect("encode jwt");
        let answer = client.request(json!({"type": "login_jwt", "jwt": token})).await;
        assert_error(&answer, "invalid_jwt");
    }
    let good = client.request(json!({"type": "login_jwt", "jwt": jwt("s", "carol", in_an_hour())})).await;
    assert_eq!(good["type"], "session", "the connection stays usable after the failures: {good}");
}

#[tokio::test]
async fn jwt_login_without_a_configured_secret_gets_auth_method_disabled() {
    let server = TestServer::start().await;
    let mut client = TestClient::connect(&server.ws_url()).await;
    assert!(!client.hello["auth"].as_array().unwrap().contains(&json!("login_jwt")), "{}", client.hello);
    let answer = client.request(json!({"type": "login_jwt", "jwt": jwt("s", "carol", in_an_hour())})).await;
    assert_error(&answer, "auth_method_disabled");
}

#[tokio::test]
async fn open_login_is_refused_by_default() {
    let server = TestServer::start().await;
    let mut client = TestClient::connect(&server.ws_url()).await;
    assert_eq!(client.hello["auth"], json!(["resume", "register", "login"]));
    let answer = client.request(json!({"type": "login_open", "username": "guest"})).await;
    assert_error(&answer, "auth_method_disabled");
}

#[tokio::test]
async fn open_login_works_when_open_auth_is_on() {
    let server = TestServer::builder().chat(|c| c.open_auth = true).start().await;
    let url = server.ws_url();
    let mut guest = TestClient::login_with(&url, json!({"type": "login_open", "username": "Guest42"})).await;
    assert!(guest.hello["auth"].as_array().unwrap().contains(&json!("login_open")), "{}", guest.hello);
    assert_eq!(guest.session["user"], "guest42");
    let whoami = guest.request(json!({"type": "whoami"})).await;
    assert_eq!(whoami["user"], "guest42");
}

#[tokio::test]
async fn after_too_many_failed_logins_even_the_right_password_is_throttled() {
    let server = TestServer::builder().chat(|c| c.login_failures_per_user = 3).start().await;
    let url = server.ws_url();
    TestClient::register(&url, "alice", "password1").await;
    TestClient::register(&url, "bob", "password2").await;

    let mut client = TestClient::connect(&url).await;
    for _ in 0..3 {
        let wrong = client.request(json!({"type": "login", "username": "alice", "password": "guess123"})).await;
        assert_error(&wrong, "auth_failed");
    }
    let throttled = client.request(json!({"type": "login", "username": "alice", "password": "password1"})).await;
    assert_error(&throttled, "login_throttled");
    let retry_after = throttled["retry_after_ms"].as_u64().unwrap_or_else(|| panic!("no retry_after_ms: {throttled}"));
    assert!(retry_after > 0 && retry_after <= 60_000, "{throttled}");

    // The throttle is per user name and address: another user still logs in from the same address.
    let bob = client.request(json!({"type": "login", "username": "bob", "password": "password2"})).await;
    assert_eq!(bob["type"], "session", "{bob}");
}

#[tokio::test]
async fn failures_from_one_address_do_not_lock_the_owner_out_of_another() {
    let server = TestServer::builder().chat(|c| c.login_failures_per_user = 3).start().await;
    let url = server.ws_url();
    TestClient::register(&url, "alice", "password1").await;

    let mut attacker = TestClient::connect_from(&url, "127.0.0.2".parse().unwrap()).await;
    for _ in 0..3 {
        let wrong = attacker.request(json!({"type": "login", "username": "alice", "password": "guess123"})).await;
        assert_error(&wrong, "auth_failed");
    }
    let throttled = attacker.request(json!({"type": "login", "username": "alice", "password": "guess456"})).await;
    assert_error(&throttled, "login_throttled");

    let mut owner = TestClient::connect_from(&url, "127.0.0.3".parse().unwrap()).await;
    let answer = owner.request(json!({"type": "login", "username": "alice", "password": "password1"})).await;
    assert_eq!(answer["type"], "session", "the owner at another address is not locked out: {answer}");
    let still = attacker.request(json!({"type": "login", "username": "alice", "password": "password1"})).await;
    assert_error(&still, "login_throttled");
}

#[tokio::test]
async fn an_unknown_name_and_a_wrong_password_both_cost_a_password_hash() {
    let server = TestServer::builder().chat(|c| c.jwt_secret = Some("s".into())).start().await;
    let url = server.ws_url();
    TestClient::register(&url, "alice", "password1").await;
    TestClient::login_with(&url, json!({"type": "login_jwt", "jwt": jwt("s", "bob", in_an_hour())})).await;
    let hashes = || server.metric("switchboard_password_checks_total");
    assert_eq!(hashes().await, 1.0, "the registration");

    let mut client = TestClient::connect(&url).await;
    let wrong = client.request(json!({"type": "login", "username": "alice", "password": "password2"})).await;
    assert_error(&wrong, "auth_failed");
    assert_eq!(hashes().await, 2.0, "a wrong password is checked");
    let unknown = client.request(json!({"type": "login", "username": "nobody", "password": "password1"})).await;
    assert_error(&unknown, "auth_failed");
    assert_eq!(unknown["message"], wrong["message"]);
    assert_eq!(hashes().await, 3.0, "an unknown name goes through a hash as well");
    let no_password = client.request(json!({"type": "login", "username": "bob", "password": "password1"})).await;
    assert_error(&no_password, "auth_failed");
    assert_eq!(hashes().await, 4.0, "so does a user without a password");
}

#[tokio::test]
async fn concurrent_password_checks_stay_within_their_bound() {
    let server = TestServer::builder().chat(|c| c.password_checks = 2).start().await;
    let url = server.ws_url();
    let users: Vec<String> = (0..12).map(|i| format!("user{i}")).collect();
    let registrations = users.iter().map(|user| TestClient::register(&url, user, "password1"));
    futures_util::future::join_all(registrations).await;
    let logins = users.iter().enumerate().map(|(i, user)| {
        let url = url.clone();
        async move {
            let password = if i % 2 == 0 { "password1" } else { "password2" };
            let mut client = TestClient::connect(&url).await;
            client.request(json!({"type": "login", "username": user, "password": password})).await
        }
    });
    let answers = futures_util::future::join_all(logins).await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["type"], if i % 2 == 0 { "session" } else { "error" }, "{answer}");
    }
    assert_eq!(server.metric("switchboard_password_checks_total").await, 24.0);
    let most = server.metric("switchboard_password_checks_in_flight_max").await;
    assert!((1.0..=2.0).contains(&most), "at most 2 password checks at once, saw {most}");
    assert_eq!(server.metric("switchboard_password_checks_in_flight").await, 0.0);
}

/// A burst of logins past `logins_in_flight` waits its turn: every login is answered with a
/// session, and no more than the bound ran at once.
#[tokio::test]
async fn a_login_burst_past_the_admission_bound_waits_and_is_all_answered() {
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.logins_in_flight = 2;
        })
        .start()
        .await;
    let url = server.ws_url();
    let logins = (0..16).map(|i| {
        let url = url.clone();
        async move {
            let mut client = TestClient::connect(&url).await;
            client.request(json!({"type": "login_open", "username": format!("burst{i}")})).await
        }
    });
    for answer in futures_util::future::join_all(logins).await {
        assert_eq!(answer["type"], "session", "{answer}");
    }
    let most = server.metric("switchboard_logins_in_flight_max").await;
    assert!((1.0..=2.0).contains(&most), "at most 2 logins at once, saw {most}");
    assert_eq!(server.metric("switchboard_logins_in_flight").await, 0.0);
}

#[tokio::test]
async fn a_successful_login_clears_the_failures_of_its_user_name() {
    let server = TestServer::builder().chat(|c| c.login_failures_per_user = 3).start().await;
    let url = server.ws_url();
    TestClient::register(&url, "alice", "password1").await;
    let mut client = TestClient::connect(&url).await;
    for _ in 0..2 {
        let wrong = client.request(json!({"type": "login", "username": "alice", "password": "guess123"})).await;
        assert_error(&wrong, "auth_failed");
    }
    TestClient::login(&url, "alice", "password1").await;
    for _ in 0..2 {
        let wrong = client.request(json!({"type": "login", "username": "alice", "password": "guess123"})).await;
        assert_error(&wrong, "auth_failed");
    }
    let right = client.request(json!({"type": "login", "username": "alice", "password": "password1"})).await;
    assert_eq!(right["type"], "session", "two failures since the last success are under the limit: {right}");
}

#[tokio::test]
async fn requests_pipelined_behind_a_login_are_answered_after_the_sync() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    TestClient::register(&url, "alice", "password1").await;

    let mut client = TestClient::connect(&url).await;
    client.send(json!({"type": "login", "ref": "in", "username": "alice", "password": "password1"})).await;
    client.send(json!({"type": "whoami", "ref": "who"})).await;
    let mut kinds = Vec::new();
    loop {
        let frame = client.next().await;
        kinds.push(frame["type"].as_str().unwrap_or_default().to_owned());
        if frame["ref"] == "who" {
            assert_eq!(frame["type"], "whoami", "{frame}");
            assert_eq!(frame["user"], "alice");
            break;
        }
    }
    let synced_at = kinds.iter().position(|kind| kind == "synced").expect("synced before the answer");
    assert_eq!(kinds[0], "session", "{kinds:?}");
    assert_eq!(synced_at, kinds.len() - 2, "the pipelined answer comes right after synced: {kinds:?}");

    // Behind a failed login the next request is not authenticated.
    let mut client = TestClient::connect(&url).await;
    client.send(json!({"type": "login", "ref": "in", "username": "alice", "password": "wrong-password"})).await;
    client.send(json!({"type": "whoami", "ref": "who"})).await;
    let failed = client.next().await;
    assert_eq!(failed["ref"], "in");
    assert_error(&failed, "auth_failed");
    let refused = client.next().await;
    assert_eq!(refused["ref"], "who");
    assert_error(&refused, "not_authenticated");
}

#[tokio::test]
async fn a_request_before_login_gets_not_authenticated_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    TestClient::register(&url, "bob", "password2").await;
    TestClient::register(&url, "alice", "password1").await;

    let mut client = TestClient::connect(&url).await;
    let refused = client.request(json!({"type": "send", "to": "bob", "text": "too early"})).await;
    assert_error(&refused, "not_authenticated");
    let refused = client.request(json!({"type": "whoami"})).await;
    assert_error(&refused, "not_authenticated");

    let session = client.request(json!({"type": "login", "username": "alice", "password": "password1"})).await;
    assert_eq!(session["type"], "session", "{session}");
    client.next_of_type("synced").await;
    let ack = client.request(json!({"type": "send", "to": "bob", "text": "now"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["seq"], 1, "the refused send was not stored");
}

#[tokio::test]
async fn a_login_frame_after_login_gets_already_authenticated() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    TestClient::register(&url, "bob", "password2").await;

    let again = alice.request(json!({"type": "login", "username": "bob", "password": "password2"})).await;
    assert_error(&again, "already_authenticated");
    let register = alice.request(json!({"type": "register", "username": "carol", "password": "password3"})).await;
    assert_error(&register, "already_authenticated");
    let whoami = alice.request(json!({"type": "whoami"})).await;
    assert_eq!(whoami["user"], "alice", "the connection is still alice's: {whoami}");
}

#[tokio::test]
async fn logout_answers_ok_closes_with_1000_and_revokes_the_token() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    let token = alice.token();

    let ok = alice.request(json!({"type": "logout"})).await;
    assert_eq!(ok["type"], "ok", "{ok}");
    assert_eq!(ok["of"], "logout");
    let (code, reason) = alice.expect_close().await;
    assert_eq!(code, 1000, "{reason}");
    assert_eq!(reason, "bye");

    let mut later = TestClient::connect(&url).await;
    let answer = later.request(json!({"type": "resume", "token": token})).await;
    assert_error(&answer, "invalid_token");
}

#[tokio::test]
async fn logout_leaves_other_connections_of_the_same_token_logged_in() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut tab = TestClient::register(&url, "alice", "password1").await;
    let mut other_tab = TestClient::resume(&url, &tab.token(), json!({})).await;
    other_tab.next_of_type("synced").await;

    let ok = tab.request(json!({"type": "logout"})).await;
    assert_eq!(ok["of"], "logout", "{ok}");
    assert_eq!(tab.expect_close().await.0, 1000);
    let whoami = other_tab.request(json!({"type": "whoami"})).await;
    assert_eq!(whoami["user"], "alice", "the other tab stays logged in: {whoami}");
}

#[tokio::test]
async fn a_connection_that_never_logs_in_is_closed_with_4000() {
    let server = TestServer::builder()
        .chat(|c| c.open_auth = true)
        .server(|s| s.auth_timeout = Duration::from_millis(300))
        .start()
        .await;
    let url = server.ws_url();
    let mut logged_in = TestClient::login_with(&url, json!({"type": "login_open", "username": "alice"})).await;

    let mut idle = TestClient::connect(&url).await;
    let (code, reason) = idle.expect_close().await;
    assert_eq!(code, 4000, "{reason}");
    assert_eq!(reason, "no login in time");

    // The older connection logged in in time, so the deadline does not apply to it.
    let pong = logged_in.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
}
