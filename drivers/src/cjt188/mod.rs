//! CJ/T 188 (户用计量仪表数据传输技术条件), the household-meter protocol of Chinese water meters: the frame
//! codec, 901F metering data and A017 valve control, a master over any byte stream. The simulated meters are in
//! the `waterworks-sim` crate.
//!
//! # Layout
//! - [`frame`]: [`Address`], [`MeterType`], [`Control`], [`Frame`], [`encode`] and the incremental [`decode`].
//! - [`payload`]: data identifiers and their byte order, per-model settings ([`Cjt188Model`], [`StBits`]),
//!   901F metering data ([`MeteringData`], [`Volume`]), A017 valve control, request builders.
//! - [`client`]: [`Cjt188Client`] over any `AsyncRead + AsyncWrite` stream, and [`Cjt188Master`] over a TCP
//!   transparent gateway or a serial line ([`Cjt188Link`]), which recovers after failures by itself.
//!
//! Facts come from DOMAIN.md §2 (open-source implementations; the standard's text was not read). Where
//! vendors disagree (DI byte order, status bits), the choice is a per-model setting, not code.
//!
//! **Invariant:** `frame` and `payload` are pure and never panic, whatever bytes they are given; the
//! decoder is fuzzed (`fuzz/`, target `cjt188_decode`) and mutation-tested (`tests/cjt188_codec.rs`).
//! This module deliberately does not implement the 2018 edition's SM4 security, history or freeze DIs,
//! price tables, or address writing; it speaks the two requests a SCADA server needs: read the meter,
//! move the valve.

pub mod client;
pub mod frame;
pub mod payload;

pub use client::{
    AbnormalReply, Cjt188Client, Cjt188Error, Cjt188Link, Cjt188Master, Cjt188Result, Cjt188Target, Port,
};
pub use frame::{decode, encode, junk_len, Address, AddressError, Control, Frame, FrameError, MeterType};
pub use payload::{
    Cjt188Model, DiOrder, Edition, MeterTime, MeteringData, ModelError, PayloadError, Reading, StBits, Status,
    ValveBits, ValveState, Volume, VolumeUnit,
};
