//! Modbus exception codes the simulated devices answer with on their own, and the exception reply PDU.
//!
//! A module of its own so that the register models (`valve`, `meters`, `logger`) and the request handling
//! (`device`, `server`, the RTU line) share the codes without importing each other. It deliberately holds no
//! logic about when a code applies.

/// 01: the function code is not supported.
pub(crate) const ILLEGAL_FUNCTION: u8 = 0x01;
/// 02: the address (or address range) is outside the device's map.
pub(crate) const ILLEGAL_DATA_ADDRESS: u8 = 0x02;
/// 03: a quantity, length or written value the device does not accept.
pub(crate) const ILLEGAL_DATA_VALUE: u8 = 0x03;
/// 0B: a gateway's target device did not respond (a request for another unit id).
pub(crate) const GATEWAY_TARGET_FAILED: u8 = 0x0B;

/// The exception reply to `function`: the function code with its high bit set, then the exception code.
pub(crate) fn exception_pdu(function: u8, code: u8) -> Vec<u8> {
    vec![function | 0x80, code]
}
