//! `switchboard chat`: a terminal client for Switchboard's native WebSocket protocol
//! (`docs/protocol.md`).
//!
//! - Logs in with a saved or given session token (`resume`), else with a password asked on a
//!   hidden prompt (or read from stdin), and keeps the token and its cursors in
//!   `$XDG_CONFIG_HOME/switchboard/session-<host>_<port>-<user>`.
//! - Interactive: a line editor with history; incoming messages and events are printed above the
//!   prompt without disturbing what is being typed; slash commands for rooms, users, history,
//!   stats; reconnects with backoff and resumes with its cursors when the connection drops. The
//!   prompt names where a plain line goes, and moves only by a command the server accepted;
//!   `/reply` answers private messages. A mistyped password is asked again (3 tries).
//! - For scripts: `--send TEXT --to bob|room:lobby` sends one message (joining the room first if
//!   need be), prints its seq and exits.
#![forbid(unsafe_code)]

mod client;
pub mod commands;
mod connection;
pub mod cursors;
pub mod display;
pub mod session;
mod terminal;

use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_tungstenite::tungstenite::Message;

use client::{Client, Login, Start};
use commands::Target;
use connection::{connect_and_login, Connected, LoginError, LOGIN_REF};
use cursors::Cursors;
use display::{now_ms, str_of, Style};
use session::{Saved, SessionStore};

/// How many times a password typed at the hidden prompt is asked for.
const PASSWORD_TRIES: u32 = 3;

/// `switchboard chat`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Type /help in the client for its commands.")]
pub struct ChatArgs {
    /// The server's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Your user name (asked for when neither given nor saved).
    #[arg(long, short)]
    pub user: Option<String>,
    /// Create the account (asks for the password twice).
    #[arg(long)]
    pub register: bool,
    /// A session token to resume instead of logging in with a password.
    #[arg(long, allow_hyphen_values = true)]
    pub token: Option<String>,
    /// Read the password from the first line of standard input instead of a hidden prompt.
    #[arg(long)]
    pub password_stdin: bool,
    /// Send this one message and exit, printing its seq (with --to).
    #[arg(long, requires = "to", value_name = "TEXT", allow_hyphen_values = true)]
    pub send: Option<String>,
    /// Where --send goes: a user name, or room:<name> (joined, or created, if need be).
    #[arg(long, requires = "send", value_name = "USER|room:ROOM")]
    pub to: Option<String>,
    /// Neither read nor write a saved session.
    #[arg(long)]
    pub no_save: bool,
}

/// Runs the client. Errors are printed as `error: ...` and end the process with status 1.
pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let restore = terminal::Restore::capture();
    let result = chat(args).await;
    restore.restore();
    if let Err(error) = result {
        if error.is::<Interrupted>() {
            eprintln!();
            std::process::exit(130);
        }
        let style = Style::detect();
        let _ = std::io::stdout().flush();
        eprintln!("{}", style.error("", &format!("{error:#}")));
        std::process::exit(1);
    }
    Ok(())
}

async fn chat(args: ChatArgs) -> anyhow::Result<()> {
    let server = connection::server_of(&args.url)?;
    let store = if args.no_save { None } else { SessionStore::for_server(&server) };
    let send_to = match &args.to {
        Some(to) => Some(Target::parse(to).ok_or_else(|| anyhow!("--to needs a user name or room:<name>"))?),
        None => None,
    };
    let user = args.user.as_deref().map(|user| user.trim().to_ascii_lowercase());
    let mut saved = match (&store, &user, &args.token) {
        (Some(store), Some(user), _) => store.load(user),
        (Some(store), None, None) => store.load_only(),
        _ => None,
    };
    let interactive = args.send.is_none();
    let mut interrupt = Interrupt::default();

    let mut login = None;
    let token = match &args.token {
        Some(token) => Some(token.clone()),
        None if args.register || args.password_stdin => None,
        None => saved.as_ref().and_then(|saved| saved.usable_token(now_ms())).map(str::to_owned),
    };
    if let Some(token) = token {
        let cursors = saved.as_ref().map(|saved| saved.cursors.clone()).unwrap_or_default();
        let frame = json!({"type": "resume", "ref": LOGIN_REF, "token": token, "presence": interactive,
                           "cursors": cursors});
        match interrupt.around(connect_and_login(&args.url, frame)).await? {
            Ok(connected) => login = Some((connected, Login::Resumed)),
            Err(LoginError::Refused { code, .. }) if code == "invalid_token" && args.token.is_none() => {
                let saved_user = saved.as_ref().map(|saved| saved.user.clone()).unwrap_or_default();
                eprintln!(
                    "{}",
                    Style::detect().notice(&format!("the saved session of {saved_user} is no longer valid"))
                );
                if let Some(store) = &store {
                    store.forget_token(&saved_user);
                }
            }
            Err(error) => return Err(login_failed(&args.url, error)),
        }
    }
    let (connected, how) = match login {
        Some(login) => login,
        None => {
            let user = match user.or_else(|| saved.as_ref().map(|saved| saved.user.clone())) {
                Some(user) => user,
                None => ask_user()?,
            };
            if saved.as_ref().is_some_and(|saved| saved.user != user) {
                saved = None;
            }
            let kind = if args.register { "register" } else { "login" };
            let cursors = saved.as_ref().map(|saved| saved.cursors.clone()).unwrap_or_default();
            let mut tries = 0;
            let connected = loop {
                tries += 1;
                let password = if args.password_stdin {
                    read_password_line()?
                } else {
                    interrupt.arm();
                    ask_password(args.register)?
                };
                let frame = json!({"type": kind, "ref": LOGIN_REF, "username": user, "password": password,
                                   "presence": interactive, "cursors": cursors});
                match interrupt.around(connect_and_login(&args.url, frame)).await? {
                    Ok(connected) => break connected,
                    // A mistyped password is asked again, as sudo does; the server's throttle
                    // (5 failures a minute per name and address) stays out of reach.
                    Err(LoginError::Refused { code, message, .. })
                        if !args.password_stdin
                            && tries < PASSWORD_TRIES
                            && matches!(code.as_str(), "auth_failed" | "invalid_password") =>
                    {
                        eprintln!("{}", Style::detect().error(&code, &message));
                    }
                    Err(error) => return Err(login_failed(&args.url, error)),
                }
            };
            (connected, if args.register { Login::Registered } else { Login::LoggedIn })
        }
    };

    let session = &connected.session;
    let user = str_of(session, "user").to_owned();
    let cursors = match saved {
        Some(saved) if saved.user == user => saved.cursors,
        _ => Default::default(),
    };
    let mut saved = Saved {
        url: args.url.clone(),
        user,
        token: Some(str_of(session, "token").to_owned()),
        expires_at: session["expires_at"].as_u64().unwrap_or(0),
        cursors,
    };
    if let Some(store) = &store {
        if let Err(error) = store.save(&saved) {
            eprintln!("{}", Style::detect().error("", &format!("saving the session: {error:#}")));
        }
    }

    if let (Some(text), Some(to)) = (args.send, send_to) {
        let (conv, seq) = interrupt.around(send_once(connected, &to, &text)).await??;
        // The message is held now: if it is next in a conversation the saved cursors cover, the
        // next interactive run need not show it as missed.
        if let (Some(store), Some(cursor)) = (&store, saved.cursors.get_mut(&conv)) {
            if *cursor + 1 == seq {
                *cursor = seq;
                let _ = store.save(&saved);
            }
        }
        return Ok(());
    }
    let current = Arc::new(Mutex::new(None));
    let (out, inputs) = terminal::start(current.clone())?;
    let client = Client::new(Start {
        url: args.url,
        connected,
        login: how,
        style: Style::detect(),
        out,
        inputs,
        current,
        store,
        cursors: Cursors::from_saved(&saved.cursors),
    });
    client.run().await
}

/// Ctrl-C at the password prompt: rpassword turns echo and signals off and reads Ctrl-C as a key,
/// then raises SIGINT, which by default would end the process before anything restores the
/// terminal (it would be left without echo). Once armed, SIGINT is caught instead: rpassword
/// returns, the terminal is restored, and every wait until the editor takes over ends on SIGINT.
#[derive(Default)]
struct Interrupt {
    signal: Option<Signal>,
}

impl Interrupt {
    fn arm(&mut self) {
        if self.signal.is_none() {
            self.signal = signal(SignalKind::interrupt()).ok();
        }
    }

    /// Runs `work` unless SIGINT comes first (once armed).
    async fn around<T>(&mut self, work: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
        let Some(signal) = self.signal.as_mut() else { return Ok(work.await) };
        tokio::select! {
            output = work => Ok(output),
            _ = signal.recv() => Err(anyhow::Error::new(Interrupted)),
        }
    }
}

#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// `--send`: one message, its `ack`, its seq on stdout. Returns the conversation and the seq.
async fn send_once(connected: Connected, to: &Target, text: &str) -> anyhow::Result<(String, u64)> {
    let mut ws = connected.ws;
    let mut frame = json!({"type": "send", "text": text, "key": format!("{:032x}", rand::random::<u128>())});
    to.apply(&mut frame);
    let mut answer = request(&mut ws, frame.clone(), LOGIN_REF + 1).await?;
    // Posting to a room from a script means posting there, as `/join` then `/say` would: join it
    // (which creates a missing room) and send again, with the same key.
    if let Target::Room(room) = to {
        if matches!(str_of(&answer, "code"), "not_a_member" | "room_not_found") {
            let joined = request(&mut ws, json!({"type": "join", "room": room}), LOGIN_REF + 2).await?;
            if joined["type"] != "room" {
                bail!("joining room {room}: {} ({})", str_of(&joined, "message"), str_of(&joined, "code"));
            }
            answer = request(&mut ws, frame, LOGIN_REF + 3).await?;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    if answer["type"] != "ack" {
        bail!("{} ({})", str_of(&answer, "message"), str_of(&answer, "code"));
    }
    let (conv, seq) = (str_of(&answer, "conv").to_owned(), answer["seq"].as_u64().unwrap_or(0));
    println!("sent: seq {seq} in {conv}");
    Ok((conv, seq))
}

/// Sends `frame` with `reference` as its `ref` and returns the frame that answers it.
async fn request(ws: &mut connection::Ws, mut frame: Value, reference: u64) -> anyhow::Result<Value> {
    frame["ref"] = json!(reference);
    ws.send(Message::Text(frame.to_string())).await.context("sending")?;
    tokio::time::timeout(connection::LOGIN_TIMEOUT, async {
        while let Some(message) = ws.next().await {
            match message.context("reading the answer")? {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(&text).context("a frame that is not JSON")?;
                    if frame["ref"] == reference {
                        return Ok(frame);
                    }
                }
                Message::Close(close) => {
                    let reason = close.map(|c| format!("{} {}", u16::from(c.code), c.reason)).unwrap_or_default();
                    bail!("the server closed the connection before answering: {reason}");
                }
                _ => {}
            }
        }
        bail!("the connection ended before the answer")
    })
    .await
    .map_err(|_| anyhow!("no answer within {} s", connection::LOGIN_TIMEOUT.as_secs()))?
}

/// `wrong user name or password (auth_failed)`, or `cannot reach ws://...: Connection refused`.
fn login_failed(url: &str, error: LoginError) -> anyhow::Error {
    match error {
        LoginError::Refused { .. } => anyhow!("{error}"),
        LoginError::Failed(_) => anyhow!("cannot reach {url}: {error}"),
    }
}

fn ask_user() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no user name: pass --user");
    }
    print!("user: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        bail!("no user name given");
    }
    let user = line.trim().to_ascii_lowercase();
    if user.is_empty() {
        bail!("no user name given");
    }
    Ok(user)
}

/// The password, on a prompt that does not echo (from the controlling terminal).
fn ask_password(register: bool) -> anyhow::Result<String> {
    let no_terminal = |_| anyhow!("cannot ask for the password without a terminal: use --password-stdin or --token");
    let _echo_off = terminal::EchoOff::new();
    let prompt = |prompt: &str| match rpassword::prompt_password(prompt) {
        Err(error) if error.kind() == std::io::ErrorKind::Interrupted => Err(anyhow::Error::new(Interrupted)),
        other => other.map_err(no_terminal),
    };
    let password = prompt("password: ")?;
    if register {
        let again = prompt("password (again): ")?;
        if again != password {
            bail!("the passwords do not match");
        }
    }
    Ok(password)
}

/// `--password-stdin`: the first line of standard input.
fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("--password-stdin: no password on standard input");
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        chat: super::ChatArgs,
    }

    #[test]
    fn a_token_or_a_text_may_start_with_a_dash() {
        // Tokens are URL-safe base64: one in 64 starts with '-'.
        let cli = Cli::try_parse_from(["chat", "--token", "-eXyZ", "--send", "-1 from me", "--to", "bob"]).unwrap();
        assert_eq!(cli.chat.token.as_deref(), Some("-eXyZ"));
        assert_eq!(cli.chat.send.as_deref(), Some("-1 from me"));
        assert!(Cli::try_parse_from(["chat", "--send", "hi"]).is_err(), "--send needs --to");
    }
}
