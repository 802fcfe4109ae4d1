//! Pure read planning and decoding for field devices. No I/O: the actor performs the requests.
//!
//! A concentrator's due meters are grouped into as few block reads as fit in one request (slots in order,
//! each request at most `max_registers`), because a dead link costs a timeout per request. A logger's
//! parameters are read one request each: their registers are scattered and reading across unmapped
//! registers makes many devices answer "illegal data address".

use drivers::registers::{decode, raw_bits, DecodeError, Function};

use super::spec::{DeviceKindSpec, DeviceSpec, MeterLayout};
use crate::model::reading::VolumeError;
use crate::model::{MeterId, MeterStatus, QualityFlags, Volume};

/// One Modbus read covering one or more values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRequest {
    pub function: Function,
    pub address: u16,
    pub count: u16,
    /// Indices of the values (meters or parameters) this request reads.
    pub values: Vec<usize>,
}

/// A value decoded from a reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    Meter {
        index: usize,
        volume: Volume,
        status: MeterStatus,
    },
    /// The concentrator marked this meter's slot "no data" (its model's `no_data` marker): the meter was not
    /// read, which is its missed cycle, not a reading and not a bad value.
    NoData {
        index: usize,
    },
    Parameter {
        index: usize,
        value: f64,
        flags: QualityFlags,
    },
}

/// Why one value of a reply was rejected (the others still decode).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// The reply ends before this meter's registers.
    #[error("reply too short for {0}")]
    ShortReply(MeterId),
    /// A meter's register does not decode (NaN, wrong length).
    #[error("{0}")]
    Register(#[from] DecodeError),
    /// A meter's volume is not a volume (negative, too large).
    #[error("{0}")]
    Volume(#[from] VolumeError),
    /// A logger parameter's register does not decode.
    #[error("{name}: {error}")]
    Parameter { name: String, error: DecodeError },
}

/// Plans the reads for the due values (indices into the device's values).
pub fn plan(spec: &DeviceSpec, due: &[usize]) -> Vec<ReadRequest> {
    match &spec.kind {
        DeviceKindSpec::Concentrator(c) => {
            let mut due: Vec<usize> = due.to_vec();
            due.sort_by_key(|&i| c.meters[i].slot);
            plan_meter_blocks(&c.layout, due.iter().map(|&i| (i, c.meters[i].slot)))
        }
        DeviceKindSpec::Logger(l) => due
            .iter()
            .map(|&i| {
                let r = &l.parameters[i].register;
                ReadRequest {
                    function: r.function,
                    address: r.address,
                    count: r.data_type.register_count(),
                    values: vec![i],
                }
            })
            .collect(),
    }
}

fn extent(layout: &MeterLayout) -> u16 {
    layout.status.map_or(layout.volume.end(), |s| s.end().max(layout.volume.end()))
}

fn plan_meter_blocks(layout: &MeterLayout, slots: impl Iterator<Item = (usize, u16)>) -> Vec<ReadRequest> {
    let ext = u32::from(extent(layout));
    let stride = u32::from(layout.stride);
    let max = u32::from(layout.max_registers.max(1));
    let mut out: Vec<ReadRequest> = Vec::new();
    let mut first_slot = 0u32;
    for (index, slot) in slots {
        let slot = u32::from(slot);
        if let Some(last) = out.last_mut() {
            let count = (slot - first_slot) * stride + ext;
            if count <= max {
                last.count = count as u16;
                last.values.push(index);
                continue;
            }
        }
        first_slot = slot;
        out.push(ReadRequest {
            function: layout.function,
            address: (u32::from(layout.base) + slot * stride) as u16,
            count: ext as u16,
            values: vec![index],
        });
    }
    out
}

/// Decodes every value of a request from its reply words. A value that does not decode (NaN, a negative
/// volume) comes back as `Err` with the reason, and the others still decode.
pub fn decode_reply(
    spec: &DeviceSpec,
    request: &ReadRequest,
    words: &[u16],
) -> Vec<Result<Decoded, (usize, ValueError)>> {
    let mut out = Vec::with_capacity(request.values.len());
    match &spec.kind {
        DeviceKindSpec::Concentrator(c) => {
            let layout = &c.layout;
            let base_slot = request.values.iter().map(|&i| c.meters[i].slot).min().unwrap_or(0);
            for &index in &request.values {
                let start = usize::from((c.meters[index].slot - base_slot) * layout.stride);
                let field = |f: &super::spec::FieldLayout| -> Result<f64, ValueError> {
                    let from = start + usize::from(f.offset);
                    let to = from + usize::from(f.data_type.register_count());
                    let w = words.get(from..to).ok_or_else(|| ValueError::ShortReply(c.meters[index].id.clone()))?;
                    Ok(decode(w, f.data_type, f.word_order).map(|raw| raw * f.scale)?)
                };
                let bits = |f: &super::spec::FieldLayout| -> Option<u64> {
                    let from = start + usize::from(f.offset);
                    let w = words.get(from..from + usize::from(f.data_type.register_count()))?;
                    raw_bits(w, f.data_type, f.word_order).ok()
                };
                let marked_by_bit = match (layout.no_data.status_bit, &layout.status) {
                    (Some(bit), Some(s)) => bits(s).is_some_and(|word| word >> bit & 1 == 1),
                    _ => false,
                };
                let marked_by_volume = layout.no_data.volume.is_some_and(|m| bits(&layout.volume) == Some(m));
                if marked_by_bit || marked_by_volume {
                    out.push(Ok(Decoded::NoData { index }));
                    continue;
                }
                let result = field(&layout.volume).and_then(|m3| Ok(Volume::from_m3(m3)?)).and_then(|volume| {
                    let status = match &layout.status {
                        Some(s) => {
                            let raw = field(s)?;
                            MeterStatus::from_device_word(raw as u16, &layout.status_bits)
                        }
                        None => MeterStatus::default(),
                    };
                    Ok(Decoded::Meter { index, volume, status })
                });
                out.push(result.map_err(|e| (index, e)));
            }
        }
        DeviceKindSpec::Logger(l) => {
            for &index in &request.values {
                let p = &l.parameters[index];
                let result = p
                    .register
                    .decode(words)
                    .map(|value| Decoded::Parameter {
                        index,
                        value,
                        flags: QualityFlags::against_limits(value, p.low, p.high),
                    })
                    .map_err(|error| (index, ValueError::Parameter { name: p.name.clone(), error }));
                out.push(result);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use drivers::modbus::TcpTarget;
    use drivers::registers::{DataType, RegisterSpec, WordOrder};

    use super::*;
    use crate::field::spec::*;
    use crate::model::{DeviceId, MeterId, RegionId};

    fn concentrator(slots: &[u16], max_registers: u16) -> DeviceSpec {
        DeviceSpec {
            id: DeviceId::new("c1"),
            name: "c1".into(),
            region: RegionId::new("r"),
            target: crate::modbus_link::ModbusPath::Tcp(TcpTarget {
                addr: "127.0.0.1:1".into(),
                unit_id: 1,
                timeout: Duration::from_secs(1),
            }),
            backups: Vec::new(),
            failover_after: 3,
            probe_every: 5,
            retries: 0,
            retry_delay: Duration::from_secs(1),
            kind: DeviceKindSpec::Concentrator(ConcentratorSpec {
                cycle: Duration::from_secs(900),
                meters: slots.iter().map(|&s| MeterSpec { id: MeterId::new(format!("m{s}")), slot: s }).collect(),
                layout: MeterLayout {
                    function: Function::Holding,
                    base: 100,
                    stride: 4,
                    volume: FieldLayout {
                        offset: 0,
                        data_type: DataType::U32,
                        word_order: WordOrder::Abcd,
                        scale: 0.001,
                    },
                    status: Some(FieldLayout {
                        offset: 2,
                        data_type: DataType::U16,
                        word_order: WordOrder::Abcd,
                        scale: 1.0,
                    }),
                    status_bits: vec![(1, MeterStatus::BATTERY_LOW)],
                    max_registers,
                    no_data: NoDataMarker::default(),
                },
            }),
        }
    }

    #[test]
    fn meters_are_grouped_into_blocks_within_the_request_limit() {
        let spec = concentrator(&[0, 1, 2, 3, 4], 12);
        let reqs = plan(&spec, &[0, 1, 2, 3, 4]);
        // Each slot is 4 registers, the last one needs 3 (u32 + u16): 3 slots fit in 12 registers (4+4+3=11).
        assert_eq!(reqs.len(), 2);
        assert_eq!((reqs[0].address, reqs[0].count, reqs[0].values.clone()), (100, 11, vec![0, 1, 2]));
        assert_eq!((reqs[1].address, reqs[1].count, reqs[1].values.clone()), (112, 7, vec![3, 4]));
    }

    #[test]
    fn only_due_meters_are_read() {
        let spec = concentrator(&[0, 1, 2, 3, 4], 125);
        let reqs = plan(&spec, &[4, 1]);
        assert_eq!(reqs.len(), 1);
        assert_eq!((reqs[0].address, reqs[0].count, reqs[0].values.clone()), (104, 15, vec![1, 4]));
    }

    #[test]
    fn a_block_decodes_each_meter_and_isolates_a_bad_one() {
        let spec = concentrator(&[0, 1], 125);
        let reqs = plan(&spec, &[0, 1]);
        // slot 0: 123456 L, battery low (bit 1); slot 1: 0xFFFFFFFF L is fine (4294967.295 m3)
        let words = [0x0001, 0xE240, 0b10, 0, 0xFFFF, 0xFFFF, 0];
        let got = decode_reply(&spec, &reqs[0], &words);
        assert_eq!(
            got[0],
            Ok(Decoded::Meter {
                index: 0,
                volume: Volume::from_litres(123_456),
                status: MeterStatus(MeterStatus::BATTERY_LOW)
            })
        );
        assert!(matches!(got[1], Ok(Decoded::Meter { index: 1, .. })));
        // A reply that is too short fails the affected meter only.
        let got = decode_reply(&spec, &reqs[0], &words[..5]);
        assert!(got[0].is_ok());
        assert_eq!(got[1].as_ref().unwrap_err().1.to_string(), "reply too short for m1");
    }

    #[test]
    fn a_slot_marked_no_data_is_not_a_reading_and_its_neighbours_still_are() {
        let mut spec = concentrator(&[0, 1, 2], 125);
        let DeviceKindSpec::Concentrator(c) = &mut spec.kind else { unreachable!() };
        c.layout.no_data = NoDataMarker { volume: Some(0xFFFF_FFFF), status_bit: Some(15) };
        let reqs = plan(&spec, &[0, 1, 2]);
        // slot 0: the volume marker; slot 1: a reading; slot 2: a volume, but the "not read" bit 15 set.
        let words = [0xFFFF, 0xFFFF, 0, 0, 0x0001, 0xE240, 0b10, 0, 0, 0x0064, 0x8000];
        let got = decode_reply(&spec, &reqs[0], &words);
        assert_eq!(got[0], Ok(Decoded::NoData { index: 0 }));
        assert!(matches!(got[1], Ok(Decoded::Meter { index: 1, .. })), "{got:?}");
        assert_eq!(got[2], Ok(Decoded::NoData { index: 2 }));
        // Without a marker in the model the same words are readings, as before.
        let spec = concentrator(&[0, 1, 2], 125);
        let got = decode_reply(&spec, &reqs[0], &words);
        assert!(got.iter().all(|g| matches!(g, Ok(Decoded::Meter { .. }))), "{got:?}");
    }

    #[test]
    fn logger_parameters_read_one_request_each_and_flag_limits() {
        let spec = DeviceSpec {
            kind: DeviceKindSpec::Logger(LoggerSpec {
                parameters: vec![ParameterSpec {
                    name: "free_chlorine".into(),
                    register: RegisterSpec {
                        function: Function::Input,
                        address: 7,
                        data_type: DataType::F32,
                        word_order: WordOrder::Cdab,
                        scale: 1.0,
                    },
                    unit: "mg/L".into(),
                    low: Some(0.3),
                    high: Some(2.0),
                    cycle: Duration::from_secs(60),
                }],
            }),
            ..concentrator(&[], 125)
        };
        let reqs = plan(&spec, &[0]);
        assert_eq!(reqs, vec![ReadRequest { function: Function::Input, address: 7, count: 2, values: vec![0] }]);
        // 0.25 f32 = 0x3E800000, CDAB on the wire.
        let got = decode_reply(&spec, &reqs[0], &[0x0000, 0x3E80]);
        assert_eq!(
            got,
            vec![Ok(Decoded::Parameter { index: 0, value: 0.25, flags: QualityFlags(QualityFlags::BELOW_LOW) })]
        );
        let got = decode_reply(&spec, &reqs[0], &[0x0000, 0x7FC0]);
        assert!(got[0].is_err());
    }
}
