//! One actor per RS-485 serial line (issue 3 §1): the bus is half duplex, so every request of every device
//! on the line goes through this actor's mailbox, one at a time, in arrival order. The line driver keeps the
//! inter-frame silence, bounds each request by the line's timeout and recovers the port after errors; a
//! dead slave therefore costs only its own timeout and never stalls the others for longer than that.
//!
//! A device actor reaches its line through a [`Slot`]; if the bus actor is being restarted, a request fails
//! like a transport error and the device retries on its next attempt.

use drivers::modbus::{ModbusError, ModbusResult};
use drivers::registers::Function;
use drivers::rtu::{LineSettings, RtuLine};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::metrics::Metrics;
use crate::supervisor::Slot;

/// One exchange on the line: what a field device reads, what a valve writes (functions 3/4, 6 and 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtuRequest {
    Read { function: Function, address: u16, count: u16 },
    WriteRegister { address: u16, value: u16 },
    WriteCoil { address: u16, on: bool },
}

pub enum RtuBusMsg {
    /// `reply` gets the registers read, or an empty vector after a write.
    Exchange { unit: u8, request: RtuRequest, reply: RpcReplyPort<ModbusResult<Vec<u16>>> },
}

#[derive(Clone, Copy)]
pub struct RtuBus;

pub struct RtuBusArgs {
    pub id: String,
    pub settings: LineSettings,
    pub slot: Slot<RtuBusMsg>,
    pub metrics: std::sync::Arc<Metrics>,
}

pub struct RtuBusState {
    id: String,
    line: RtuLine,
}

impl Actor for RtuBus {
    type Msg = RtuBusMsg;
    type State = RtuBusState;
    type Arguments = RtuBusArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RtuBusMsg>,
        args: RtuBusArgs,
    ) -> Result<RtuBusState, ActorProcessingErr> {
        args.slot.set(myself);
        tracing::info!(message = "Serial line ready.", line = %args.id, path = %args.settings.path, baud = args.settings.baud);
        Ok(RtuBusState { id: args.id, line: RtuLine::new(args.settings) })
    }

    async fn handle(
        &self,
        _myself: ActorRef<RtuBusMsg>,
        msg: RtuBusMsg,
        state: &mut RtuBusState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RtuBusMsg::Exchange { unit, request, reply } => {
                // A caller that gave up (its own timeout) no longer needs the line.
                if reply.is_closed() {
                    return Ok(());
                }
                let line = &mut state.line;
                let result = match request {
                    RtuRequest::Read { function, address, count } => {
                        line.read_registers(unit, function, address, count).await
                    }
                    RtuRequest::WriteRegister { address, value } => {
                        line.write_register(unit, address, value).await.map(|r| r.map(|()| Vec::new()))
                    }
                    RtuRequest::WriteCoil { address, on } => {
                        line.write_coil(unit, address, on).await.map(|r| r.map(|()| Vec::new()))
                    }
                };
                if let Err(e) = &result {
                    tracing::debug!(message = "Serial request failed.", line = %state.id, unit, error = %e);
                }
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}

/// One exchange through a line's bus actor; waits as long as the queue ahead needs, bounded by `wait`.
pub async fn exchange(
    bus: &Slot<RtuBusMsg>,
    unit: u8,
    request: RtuRequest,
    wait: std::time::Duration,
) -> ModbusResult<Vec<u16>> {
    let Some(actor) = bus.get() else {
        return Err(ModbusError::Transport("serial line actor not running".into()));
    };
    match ractor::call_t!(actor, |reply| RtuBusMsg::Exchange { unit, request, reply }, wait.as_millis() as u64) {
        Ok(result) => result,
        Err(_) => Err(ModbusError::Timeout(wait)),
    }
}
