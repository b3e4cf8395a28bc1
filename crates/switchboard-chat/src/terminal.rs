//! The terminal: a line editor (rustyline) on a thread of its own, and a printer thread that puts
//! incoming lines above the prompt through rustyline's external printer, which redraws the prompt
//! and the half-typed line below them.
//!
//! The prompt names where a plain line goes. Rustyline cannot change a prompt it is showing, so
//! after each line the editor waits (briefly, bounded) until the client has settled the current
//! conversation, which may take the server's answer (`/chat nobody hi` is refused: the prompt
//! stays), and only then draws the next prompt.

use std::io::{IsTerminal, Write};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustyline::error::ReadlineError;
use rustyline::{
    Cmd, ConditionalEventHandler, Config, DefaultEditor, Event, EventContext, EventHandler, ExternalPrinter, KeyEvent,
    RepeatCount,
};
use tokio::sync::mpsc;

use crate::commands::{self, Command, Target};

/// The longest the editor waits for the client to settle the current conversation.
const SETTLE_WAIT: Duration = Duration::from_secs(5);

/// What the editor thread hands to the client.
#[derive(Debug)]
pub enum Input {
    /// A command, and the handle whose drop tells the editor to draw the next prompt.
    Command(Command, Settle),
    /// `/quit`, Ctrl-D, or Ctrl-C on an empty line.
    Quit,
}

/// Held by the client until it knows where plain lines go after a command (for a switch, once the
/// server has answered); dropping it lets the editor draw the next prompt.
#[derive(Debug)]
pub struct Settle {
    _held: std_mpsc::Sender<()>,
}

/// The current conversation: written by the client, read by the editor for the prompt.
pub type Current = Arc<Mutex<Option<Target>>>;

/// Ctrl-C: on a non-empty line, clear it as a shell does but keep it in the history (Up brings it
/// back); on an empty line, quit. Rustyline's interrupt does not say what the line held: this
/// handler notes it first.
struct KeepOnInterrupt(Arc<Mutex<String>>);

impl ConditionalEventHandler for KeepOnInterrupt {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, context: &EventContext) -> Option<Cmd> {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = context.line().to_owned();
        Some(Cmd::Interrupt)
    }
}

/// Prints lines, above the prompt while the editor runs.
pub struct Printer {
    lines: Option<std_mpsc::Sender<String>>,
    thread: Option<JoinHandle<()>>,
}

impl Printer {
    pub fn print(&self, line: impl Into<String>) {
        if let Some(lines) = &self.lines {
            let _ = lines.send(line.into());
        }
    }

    /// Prints what is queued and stops the printer thread.
    pub fn finish(&mut self) {
        self.lines.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The terminal mode found at start, put back on the way out even if the editor thread is still
/// in its raw mode (the process may end while it waits for a key).
pub struct Restore {
    saved: Option<nix::sys::termios::Termios>,
}

impl Restore {
    pub fn capture() -> Restore {
        let stdin = std::io::stdin();
        let saved = if stdin.is_terminal() { nix::sys::termios::tcgetattr(&stdin).ok() } else { None };
        Restore { saved }
    }

    pub fn restore(&self) {
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, saved);
            let mut stdout = std::io::stdout();
            if stdout.is_terminal() {
                // Bracketed paste off, in case the editor had it on.
                let _ = stdout.write_all(b"\x1b[?2004l");
                let _ = stdout.flush();
            }
        }
    }
}

/// Turns the terminal's echo off while it lives. rpassword writes its prompt before it turns echo
/// off itself, so keys typed as soon as the prompt shows (a quick typist, a paste, a test) would be
/// echoed; with this around the prompts they never are.
pub struct EchoOff {
    tty: std::fs::File,
    saved: nix::sys::termios::Termios,
}

impl EchoOff {
    pub fn new() -> Option<EchoOff> {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").ok()?;
        let saved = tcgetattr(&tty).ok()?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        tcsetattr(&tty, SetArg::TCSANOW, &quiet).ok()?;
        Some(EchoOff { tty, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(&self.tty, nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

/// Starts the editor and printer threads. Lines typed arrive on the returned receiver.
pub fn start(current: Current) -> anyhow::Result<(Printer, mpsc::UnboundedReceiver<Input>)> {
    let config = Config::builder().auto_add_history(false).max_history_size(1000)?.build();
    let mut editor = DefaultEditor::with_config(config)?;
    let interrupted = Arc::new(Mutex::new(String::new()));
    editor
        .bind_sequence(KeyEvent::ctrl('C'), EventHandler::Conditional(Box::new(KeepOnInterrupt(interrupted.clone()))));
    let (lines, line_queue) = std_mpsc::channel::<String>();
    // Without a terminal on both sides rustyline has no external printer: print plainly then.
    let external = editor.create_external_printer().ok();
    let thread =
        std::thread::Builder::new().name("chat-printer".into()).spawn(move || print_lines(line_queue, external))?;
    let (inputs, input_queue) = mpsc::unbounded_channel();
    std::thread::Builder::new().name("chat-editor".into()).spawn(move || edit(editor, current, interrupted, inputs))?;
    Ok((Printer { lines: Some(lines), thread: Some(thread) }, input_queue))
}

fn print_lines(queue: std_mpsc::Receiver<String>, mut external: Option<impl ExternalPrinter>) {
    for mut line in queue {
        if !line.ends_with('\n') {
            line.push('\n');
        }
        if let Some(printer) = external.as_mut() {
            if printer.print(line.clone()).is_ok() {
                continue;
            }
            external = None;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(line.as_bytes());
        let _ = stdout.flush();
    }
}

/// The editor loop: reads lines with history and editing, parses them, hands them on, and waits
/// for the client to settle where the next plain line goes before showing the next prompt.
fn edit(
    mut editor: DefaultEditor,
    current: Current,
    interrupted: Arc<Mutex<String>>,
    inputs: mpsc::UnboundedSender<Input>,
) {
    loop {
        let shown = current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let prompt = match &shown {
            Some(target) => format!("[{target}]> "),
            None => "> ".to_owned(),
        };
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                let line = std::mem::take(&mut *interrupted.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
                if line.trim().is_empty() {
                    let _ = inputs.send(Input::Quit);
                    return;
                }
                let _ = editor.add_history_entry(line);
                continue;
            }
            Err(ReadlineError::Eof) => {
                let _ = inputs.send(Input::Quit);
                return;
            }
            Err(error) => {
                eprintln!("error: reading the terminal: {error}");
                let _ = inputs.send(Input::Quit);
                return;
            }
        };
        if !line.trim().is_empty() {
            let _ = editor.add_history_entry(line.as_str());
        }
        // A plain line goes where the prompt it was typed at said.
        let command = commands::parse(&line, shown.as_ref());
        if command == Command::Quit {
            let _ = inputs.send(Input::Quit);
            return;
        }
        let logout = command == Command::Logout;
        let (settle, settled) = std_mpsc::channel();
        if inputs.send(Input::Command(command, Settle { _held: settle })).is_err() || logout {
            return;
        }
        // Keys typed meanwhile wait in the terminal, unechoed, for the next prompt.
        let _quiet = EchoOff::new();
        let _ = settled.recv_timeout(SETTLE_WAIT);
    }
}
