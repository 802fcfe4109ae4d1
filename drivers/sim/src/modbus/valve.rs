//! A simulated remote valve with a register interface (the "ww-valve-v1" model and others like it): a
//! command register written with function 6 (`open_value` or `close_value`) and a status register read
//! back (`closed_code`, `open_code`, `moving_code`, `fault_code`). The valve travels for `travel_s` simulated
//! seconds after a command; a `stuck` fault makes it ignore commands, so a caller can test a valve that never
//! confirms. This module does not read sockets or apply other faults.

use drivers::registers::Function;

use super::exception::ILLEGAL_DATA_VALUE;
use super::spec::ValveLayout;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Position {
    Open,
    Closed,
    /// Travelling towards open (`true`) or closed, arriving at simulated time `until`.
    Moving {
        to_open: bool,
        until: f64,
    },
}

/// One simulated valve.
#[derive(Debug)]
pub(crate) struct Valve {
    layout: ValveLayout,
    position: Position,
    /// Commands accepted (moved or not); lets tests see that a command arrived.
    commands: u64,
}

impl Valve {
    pub(crate) fn new(layout: ValveLayout) -> Self {
        let position = if layout.initially_open { Position::Open } else { Position::Closed };
        Valve { layout, position, commands: 0 }
    }

    fn settle(&mut self, t: f64) {
        if let Position::Moving { to_open, until } = self.position {
            if t >= until {
                self.position = if to_open { Position::Open } else { Position::Closed };
            }
        }
    }

    /// Whether this register write lands on the command register; handles it if so. `Err` is a Modbus
    /// exception.
    pub(crate) fn write(&mut self, address: u16, value: u16, t: f64, stuck: bool) -> Option<Result<(), u8>> {
        if self.layout.command_coil || address != self.layout.command_address {
            return None;
        }
        let to_open = if value == self.layout.open_value {
            true
        } else if value == self.layout.close_value {
            false
        } else {
            return Some(Err(ILLEGAL_DATA_VALUE));
        };
        Some(self.command(to_open, t, stuck))
    }

    /// Whether this coil write is the valve's command coil (on = open); handles it if so.
    pub(crate) fn write_coil(&mut self, address: u16, on: bool, t: f64, stuck: bool) -> Option<Result<(), u8>> {
        if !self.layout.command_coil || address != self.layout.command_address {
            return None;
        }
        Some(self.command(on, t, stuck))
    }

    fn command(&mut self, to_open: bool, t: f64, stuck: bool) -> Result<(), u8> {
        self.commands += 1;
        self.settle(t);
        if !stuck {
            let already = matches!((self.position, to_open), (Position::Open, true) | (Position::Closed, false));
            if !already {
                self.position = Position::Moving { to_open, until: t + self.layout.travel_s };
            }
        }
        Ok(())
    }

    /// Fills the status register if it is asked for; other words stay as they are.
    pub(crate) fn fill(&mut self, function: Function, address: u16, words: &mut [Option<u16>], t: f64) {
        self.settle(t);
        if function != self.layout.status_function {
            return;
        }
        if let Some(i) = self.layout.status_address.checked_sub(address).map(usize::from) {
            if let Some(slot) = words.get_mut(i) {
                *slot = Some(self.status_code());
            }
        }
        if function == Function::Holding {
            if let Some(i) = self.layout.command_address.checked_sub(address).map(usize::from) {
                if let Some(slot) = words.get_mut(i) {
                    slot.get_or_insert(0);
                }
            }
        }
    }

    fn status_code(&self) -> u16 {
        match self.position {
            Position::Open => self.layout.open_code,
            Position::Closed => self.layout.closed_code,
            Position::Moving { .. } => self.layout.moving_code,
        }
    }

    /// Whether the valve is open now (`None` while it moves).
    pub(crate) fn is_open(&mut self, t: f64) -> Option<bool> {
        self.settle(t);
        match self.position {
            Position::Open => Some(true),
            Position::Closed => Some(false),
            Position::Moving { .. } => None,
        }
    }

    pub(crate) fn commands(&self) -> u64 {
        self.commands
    }

    /// Someone turned the valve by hand: it is at once at the given end position, no command counted
    /// (for tests and the demo of an uncommanded change of position, issue 9 §1).
    pub(crate) fn turn_by_hand(&mut self, open: bool) {
        self.position = if open { Position::Open } else { Position::Closed };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> ValveLayout {
        ValveLayout {
            command_coil: false,
            command_address: 0,
            open_value: 1,
            close_value: 2,
            status_function: Function::Input,
            status_address: 1,
            closed_code: 0,
            open_code: 1,
            moving_code: 2,
            fault_code: 3,
            travel_s: 10.0,
            initially_open: true,
        }
    }

    fn status(v: &mut Valve, t: f64) -> u16 {
        let mut words = [None; 2];
        v.fill(Function::Input, 0, &mut words, t);
        words[1].unwrap()
    }

    #[test]
    fn a_command_travels_then_settles() {
        let mut v = Valve::new(layout());
        assert_eq!(status(&mut v, 0.0), 1);
        assert_eq!(v.write(0, 2, 0.0, false), Some(Ok(())));
        assert_eq!(status(&mut v, 5.0), 2);
        assert_eq!(status(&mut v, 10.0), 0);
        assert_eq!(v.is_open(10.0), Some(false));
        // Closing a closed valve changes nothing.
        assert_eq!(v.write(0, 2, 11.0, false), Some(Ok(())));
        assert_eq!(status(&mut v, 11.0), 0);
        assert_eq!(v.commands(), 2);
    }

    #[test]
    fn a_stuck_valve_accepts_commands_and_never_moves() {
        let mut v = Valve::new(layout());
        assert_eq!(v.write(0, 2, 0.0, true), Some(Ok(())));
        assert_eq!(status(&mut v, 100.0), 1);
    }

    #[test]
    fn other_writes_and_bad_values() {
        let mut v = Valve::new(layout());
        assert_eq!(v.write(7, 2, 0.0, false), None);
        assert_eq!(v.write(0, 9, 0.0, false), Some(Err(ILLEGAL_DATA_VALUE)));
    }
}
