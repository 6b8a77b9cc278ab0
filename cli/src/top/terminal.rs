//! The interactive loop of `poolside top`: alternate screen, raw mode, a fresh scan every
//! interval or keypress, and restoring the terminal however the loop ends.

use super::view::{self, SortKey};
use crate::reader;
use crate::report::build;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, style, terminal};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Restores the terminal when dropped, including on early return.
struct Screen;

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        terminal::enable_raw_mode()?;
        let mut out = std::io::stdout();
        if let Err(e) = execute!(out, terminal::EnterAlternateScreen, cursor::Hide) {
            let _ = terminal::disable_raw_mode();
            return Err(e);
        }
        Ok(Screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// What a key asks for.
enum Action {
    Quit,
    Redraw,
    None,
}

fn on_key(k: KeyEvent, key: &mut SortKey, descending: &mut bool) -> Action {
    if k.kind != KeyEventKind::Press {
        return Action::None;
    }
    match k.code {
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('i') => {
            *descending = !*descending;
            Action::Redraw
        }
        KeyCode::Left | KeyCode::Right | KeyCode::Char('<') | KeyCode::Char('>') => {
            let fwd = matches!(k.code, KeyCode::Right | KeyCode::Char('>'));
            *key = key.step(fwd);
            *descending = key.descending_by_default();
            Action::Redraw
        }
        KeyCode::Char(c) => match SortKey::from_char(c) {
            Some(k2) => {
                *key = k2;
                *descending = k2.descending_by_default();
                Action::Redraw
            }
            None => Action::None,
        },
        _ => Action::None,
    }
}

fn draw(lines: &[String]) -> std::io::Result<()> {
    let mut out = std::io::stdout();
    queue!(out, terminal::Clear(terminal::ClearType::All))?;
    for (i, l) in lines.iter().enumerate() {
        queue!(out, cursor::MoveTo(0, i as u16), style::Print(l))?;
    }
    out.flush()
}

/// Runs until q, Esc or Ctrl-C.
pub fn run(dir: &Path, interval: Duration) -> std::io::Result<()> {
    let _screen = Screen::enter()?;
    let (mut key, mut descending) = (SortKey::Reserved, true);
    loop {
        let (mut reports, status) = match reader::scan(dir) {
            Ok(s) => (
                s.processes
                    .iter()
                    .map(|p| build::process(p, false))
                    .collect::<Vec<_>>(),
                s.warnings.last().cloned().unwrap_or_default(),
            ),
            Err(e) => (Vec::new(), format!("cannot read {}: {e}", dir.display())),
        };
        view::sort(&mut reports, key, descending);
        let (w, h) = terminal::size().unwrap_or((80, 24));
        draw(&view::render(
            &reports, key, descending, &status, w as usize, h as usize,
        ))?;
        let deadline = Instant::now() + interval;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !event::poll(left)? {
                break;
            }
            match event::read()? {
                Event::Key(k) => match on_key(k, &mut key, &mut descending) {
                    Action::Quit => return Ok(()),
                    Action::Redraw => break,
                    Action::None => {}
                },
                Event::Resize(..) => break,
                _ => {}
            }
        }
    }
}
