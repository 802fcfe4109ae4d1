//! Simulated devices as a Modbus client sees them: concentrator volumes and status words, logger values in
//! their configured encodings, writes, unit ids, start-up errors and shutdown.
//!
//! Every device listens on port 0 and is read with the project's own guarded client, so these tests also
//! check that the simulator and the client agree on the wire. Faults are covered in `sim_faults.rs`.

mod support;

use std::time::Duration;

use drivers::modbus::Exception;
use drivers::registers::{DataType, Function, RegisterSpec, WordOrder};
use support::{client, concentrator, litres_layout, parameter, small_logger, start};
use tokio::io::AsyncReadExt;
use waterworks_sim::modbus::{
    ConcentratorLayout, FieldSpec, ModbusFault, ModbusSim, ModbusSimError, ModbusSimSpec, SimDeviceSpec, SimKind,
};

const TIMEOUT: Duration = Duration::from_secs(2);
/// One simulated day per wall second, so volumes visibly rise between two reads.
const FAST: f64 = 86_400.0;

/// Reads `count` registers or fails the test with the reason.
async fn read(client: &mut drivers::modbus::ModbusTcpClient, function: Function, address: u16, count: u16) -> Vec<u16> {
    match client.read_registers(function, address, count).await {
        Ok(Ok(words)) => words,
        other => panic!("read {function} {address}+{count} failed: {other:?}"),
    }
}

/// Decodes the volume of every slot of `layout` from a read of all its registers.
fn volumes(layout: &ConcentratorLayout, words: &[u16]) -> Vec<f64> {
    let v = layout.volume;
    let spec = RegisterSpec {
        function: layout.function,
        address: 0,
        data_type: v.data_type,
        word_order: v.word_order,
        scale: v.scale,
    };
    (0..usize::from(layout.meters))
        .map(|slot| {
            let at = slot * usize::from(layout.stride) + usize::from(v.offset);
            let n = usize::from(v.data_type.register_count());
            spec.decode(&words[at..at + n]).unwrap_or_else(|e| panic!("slot {slot}: {e}"))
        })
        .collect()
}

#[tokio::test]
async fn concentrator_volumes_decode_match_the_truth_and_only_rise() {
    let litres = litres_layout(30);
    // A second model: input registers from 1000, 6 per slot, f32 m3 in CDAB at offset 2, no status word.
    let floats = ConcentratorLayout {
        meters: 8,
        function: Function::Input,
        base: 1000,
        stride: 6,
        volume: FieldSpec { offset: 2, data_type: DataType::F32, word_order: WordOrder::Cdab, scale: 1.0 },
        status: None,
        status_bits: Vec::new(),
        no_data: None,
        no_data_bit: None,
        district: None,
    };
    let sim =
        start(vec![concentrator("c-litres", litres.clone()), concentrator("c-floats", floats.clone())], FAST).await;

    for (id, layout) in [("c-litres", &litres), ("c-floats", &floats)] {
        let mut c = client(&sim, id, TIMEOUT);
        let count = layout.meters * layout.stride;
        let first = volumes(layout, &read(&mut c, layout.function, layout.base, count).await);
        for (slot, served) in first.iter().enumerate() {
            let truth = sim.meter_volume(id, slot as u16).unwrap_or(f64::NAN);
            assert!((50.0..3100.0).contains(served), "{id} slot {slot}: {served} m3");
            // The truth was taken after the read, so it may be a little higher, never lower (beyond rounding).
            assert!(
                truth >= served - 0.001 && truth - served < 1.0,
                "{id} slot {slot}: served {served}, truth {truth}"
            );
        }
        let mut last = first.clone();
        let mut reads = 0;
        loop {
            let now = volumes(layout, &read(&mut c, layout.function, layout.base, count).await);
            for (slot, (before, after)) in last.iter().zip(&now).enumerate() {
                assert!(after >= before, "{id} slot {slot} fell from {before} to {after}");
            }
            last = now;
            reads += 1;
            if last.iter().sum::<f64>() - first.iter().sum::<f64>() > 0.5 {
                break;
            }
            assert!(reads < 500, "{id}: volumes did not rise");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(sim.meter_volume("c-litres", 30), None, "no slot 30");
    assert_eq!(sim.meter_volume("nope", 0), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn concentrator_status_words_and_map_edges() {
    let layout = litres_layout(60);
    let sim = start(vec![concentrator("c1", layout.clone())], FAST).await;
    let mut c = client(&sim, "c1", TIMEOUT);
    let words = read(&mut c, Function::Holding, 0, 120).await;
    let mut words2 = read(&mut c, Function::Holding, 120, 120).await;
    let mut all = words;
    all.append(&mut words2);
    let status: Vec<u16> = (0..60).map(|slot| all[slot * 4 + 2]).collect();
    let with = |bit: u16| status.iter().filter(|s| *s & (1 << bit) != 0).count();
    assert_eq!(with(2), 1, "exactly one magnetic tamper");
    assert!(with(1) <= 12, "battery_low on {} of 60", with(1));
    assert_eq!(with(3) + with(4), 0, "reverse flow and meter fault are never simulated");
    assert!(status.iter().all(|s| *s < 8), "only the three simulated bits are used");
    assert_eq!(&all[3..4], &[0], "the reserved word of slot 0 reads 0");

    // The last register of the map is fine; one more is outside it, and so is the other function.
    assert_eq!(read(&mut c, Function::Holding, 239, 1).await.len(), 1);
    assert!(matches!(c.read_registers(Function::Holding, 239, 2).await, Ok(Err(Exception(0x02)))));
    assert!(matches!(c.read_registers(Function::Input, 0, 2).await, Ok(Err(Exception(0x02)))));
    // An exception is a valid reply: the connection is kept.
    assert_eq!(c.connects(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn logger_serves_every_parameter_near_nominal_in_its_encoding() {
    use DataType::*;
    use Function::Input;
    use WordOrder::*;
    // (name, data type, word order, scale, nominal, tolerance), laid out back to back from address 0. The
    // tolerance is the model's drift plus noise plus the encoding's rounding, with a little room.
    let table = [
        ("free_chlorine", F32, Cdab, 1.0, 0.5, 0.1),
        ("turbidity", F32, Abcd, 1.0, 0.3, 0.11),
        ("ph", I16, Abcd, 0.01, 7.2, 0.2),
        ("dissolved_oxygen", F64, Dcba, 1.0, 8.0, 0.5),
        ("ammonia", U32, Cdab, 0.0001, 0.12, 0.04),
        ("lead", F32, Badc, 1.0, 0.003, 0.001),
        ("cadmium", F32, Cdab, 1.0, 0.001, 0.0004),
        ("arsenic", F32, Cdab, 1.0, 0.002, 0.0007),
        ("mercury", F32, Cdab, 1.0, 0.0002, 0.00007),
        ("chromium6", F32, Cdab, 1.0, 0.01, 0.003),
        ("temperature", I16, Abcd, 0.1, 15.0, 1.7),
        ("conductivity", U16, Abcd, 1.0, 350.0, 18.0),
        ("colour_index", F32, Cdab, 1.0, 1.0, 0.07),
    ];
    let mut address = 0;
    let mut parameters = Vec::new();
    for (name, data_type, order, scale, _, _) in table {
        parameters.push(parameter(name, Input, address, data_type, order, scale));
        address += data_type.register_count();
    }
    let spec = SimDeviceSpec {
        id: "q1".to_owned(),
        listen: support::any_port(),
        unit_id: 1,
        kind: SimKind::Logger(parameters.clone()),
        fault: ModbusFault::default(),
    };
    let sim = start(vec![spec], FAST).await;
    let mut c = client(&sim, "q1", TIMEOUT);

    for (p, (name, _, _, _, nominal, tolerance)) in parameters.iter().zip(table) {
        let words = read(&mut c, Input, p.spec.address, p.spec.data_type.register_count()).await;
        let value = p.spec.decode(&words).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(value >= 0.0 && (value - nominal).abs() <= tolerance, "{name} = {value}, nominal {nominal}");
        assert_eq!(sim.parameter_value("q1", name), Some(value), "{name}: the value served is the value recorded");
    }
    // The whole block in one read, as a poller would do it.
    assert_eq!(read(&mut c, Input, 0, address).await.len(), usize::from(address));
    assert!(matches!(c.read_registers(Input, address, 1).await, Ok(Err(Exception(0x02)))));
    assert_eq!(sim.parameter_value("q1", "no_such"), None);

    // Forced values are served as given, even out of range.
    let forced = ModbusFault {
        values: [("free_chlorine".to_owned(), 0.01), ("ph".to_owned(), 9.87)].into_iter().collect(),
        ..ModbusFault::default()
    };
    assert!(sim.set_fault("q1", forced).is_ok());
    let chlorine = parameters[0].spec.decode(&read(&mut c, Input, 0, 2).await).unwrap_or(f64::NAN);
    assert_eq!(chlorine, f64::from(0.01f32));
    let ph = parameters[2].spec.decode(&read(&mut c, Input, parameters[2].spec.address, 1).await).unwrap_or(f64::NAN);
    assert!((ph - 9.87).abs() < 1e-9, "{ph}");
    assert_eq!(sim.parameter_value("q1", "ph"), Some(ph));

    let unknown =
        ModbusFault { values: [("lead_ish".to_owned(), 1.0)].into_iter().collect(), ..ModbusFault::default() };
    assert!(matches!(sim.set_fault("q1", unknown), Err(ModbusSimError::InvalidFault { .. })));
    sim.shutdown().await;
}

#[tokio::test]
async fn writes_go_to_the_overlay_and_read_back() {
    let sim = start(vec![small_logger("q1")], 1.0).await;
    let mut c = client(&sim, "q1", TIMEOUT);
    assert!(matches!(c.write_register(500, 0xBEEF).await, Ok(Ok(()))));
    assert_eq!(read(&mut c, Function::Holding, 500, 1).await, vec![0xBEEF]);
    assert!(matches!(c.write_coil(7, true).await, Ok(Ok(()))));
    assert!(matches!(c.read_registers(Function::Holding, 501, 1).await, Ok(Err(Exception(0x02)))));
    sim.shutdown().await;
}

#[tokio::test]
async fn unit_ids_other_than_ours_0_and_255_are_refused() {
    let mut spec = small_logger("q1");
    spec.unit_id = 17;
    let sim = start(vec![spec], 1.0).await;
    let mut c = client(&sim, "q1", TIMEOUT);
    for (unit, served) in [(17, true), (0, true), (255, true), (1, false), (18, false)] {
        c.set_unit_id(unit);
        let got = c.read_registers(Function::Input, 0, 2).await;
        if served {
            assert!(matches!(got, Ok(Ok(_))), "unit {unit}: {got:?}");
        } else {
            assert!(matches!(got, Ok(Err(Exception(0x0B)))), "unit {unit}: {got:?}");
        }
    }
    assert_eq!(sim.requests("q1"), Some(5));
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_specs_fail_before_binding_and_bind_errors_name_the_device() {
    let taken = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| Ok((l.local_addr()?, l))) {
        Ok(pair) => pair,
        Err(e) => panic!("cannot bind a port for the test: {e}"),
    };
    let mut clash = small_logger("q-clash");
    clash.listen = taken.0;
    let result =
        ModbusSim::start(ModbusSimSpec { devices: vec![small_logger("q-ok"), clash], speed: 1.0, seed: 1 }).await;
    match result {
        Err(e @ ModbusSimError::Bind { .. }) => {
            let message = e.to_string();
            assert!(message.contains("q-clash") && message.contains(&taken.0.to_string()), "{message}");
        }
        other => panic!("expected a bind error, got {other:?}"),
    }

    let twice =
        ModbusSim::start(ModbusSimSpec { devices: vec![small_logger("a"), small_logger("a")], speed: 1.0, seed: 1 })
            .await;
    assert_eq!(
        twice.err().map(|e| e.to_string()),
        Some("invalid simulator spec: device id \"a\" is used twice".to_owned())
    );
    let still = ModbusSim::start(ModbusSimSpec { devices: vec![], speed: 0.0, seed: 1 }).await;
    assert!(matches!(still, Err(ModbusSimError::InvalidSpec(_))));
    let mut bad_fault = small_logger("q");
    bad_fault.fault.exception = Some(0);
    let refused = ModbusSim::start(ModbusSimSpec { devices: vec![bad_fault], speed: 1.0, seed: 1 }).await;
    assert_eq!(
        refused.err().map(|e| e.to_string()),
        Some("invalid simulated device q: exception code 0 is not a modbus exception".to_owned())
    );
}

#[tokio::test]
async fn shutdown_closes_listeners_and_open_connections() {
    let sim = start(vec![small_logger("q1"), concentrator("c1", litres_layout(3))], 1.0).await;
    assert_eq!(sim.device_ids(), vec!["q1".to_owned(), "c1".to_owned()]);
    let addr = sim.addr("q1").unwrap_or_else(|| panic!("no q1"));
    let mut open = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => panic!("cannot connect: {e}"),
    };
    // Make sure the connection was accepted and is being served before shutting down.
    let mut c = client(&sim, "q1", TIMEOUT);
    read(&mut c, Function::Input, 0, 2).await;
    sim.shutdown().await;
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(TIMEOUT, open.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "open connection still open: {closed:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener still accepts");
}
