//! QEMU's two control channels over unix sockets, with the `qapi` crate's typed commands:
//! QMP (the monitor: run state, migration, devices, power) and the guest agent (QGA: sync,
//! running programs in the guest). Each logical operation opens its own connection and does
//! its whole exchange on it (upstream's stop sent `qmp_capabilities` and `system_powerdown` on
//! two connections, so QEMU refused the second for want of the first).

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub use qapi::{qga, qmp};

/// How long one command may take to answer before the channel is given up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

pub type Qmp<'a> = qapi::Qmp<qapi::Stream<BufReader<&'a UnixStream>, &'a UnixStream>>;
pub type Qga<'a> = qapi::Qga<qapi::Stream<BufReader<&'a UnixStream>, &'a UnixStream>>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ControlError(pub String);

pub fn error(context: &str, e: impl std::fmt::Display) -> ControlError {
    ControlError(format!("{context}: {e}"))
}

/// Connects to `socket`, waiting up to `wait` for QEMU to create it.
pub fn connect(socket: &Path, wait: Duration) -> Result<UnixStream, ControlError> {
    let deadline = Instant::now() + wait;
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => {
                stream.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(|e| error("socket", e))?;
                stream.set_write_timeout(Some(COMMAND_TIMEOUT)).map_err(|e| error("socket", e))?;
                return Ok(stream);
            }
            Err(e) if Instant::now() >= deadline => return Err(error(&format!("connect to {}", socket.display()), e)),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A QMP session that has negotiated capabilities, ready for commands.
pub fn qmp(stream: &UnixStream) -> Result<Qmp<'_>, ControlError> {
    let mut session = qapi::Qmp::from_stream(stream);
    session.handshake().map_err(|e| error("QMP handshake", e))?;
    Ok(session)
}

/// The VM's run state (`running`, `paused`, `inmigrate`, ...), as QEMU names it.
pub fn run_state(session: &mut Qmp<'_>) -> Result<String, ControlError> {
    let status = session.execute(&qmp::query_status {}).map_err(|e| error("query-status", e))?;
    Ok(serde_json::to_value(status.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
}

/// Switches on `mapped-ram` and `multifd` with `channels` channels: the snapshot file keeps
/// each RAM page at a fixed offset and is written and read in parallel.
pub fn set_snapshot_capabilities(session: &mut Qmp<'_>, channels: u8) -> Result<(), ControlError> {
    let capabilities = [qmp::MigrationCapability::mapped_ram, qmp::MigrationCapability::multifd]
        .into_iter()
        .map(|capability| qmp::MigrationCapabilityStatus { capability, state: true })
        .collect();
    session
        .execute(&qmp::migrate_set_capabilities { capabilities })
        .map_err(|e| error("migrate-set-capabilities", e))?;
    let parameters = qmp::MigrateSetParameters { multifd_channels: Some(channels), ..Default::default() };
    session.execute(&qmp::migrate_set_parameters(parameters)).map_err(|e| error("migrate-set-parameters", e))?;
    Ok(())
}

/// A guest-agent session that has synchronised (the agent echoes a fresh id), waiting up to
/// `wait` for the agent to answer.
pub fn qga_synced(socket: &Path, wait: Duration) -> Result<UnixStream, ControlError> {
    let deadline = Instant::now() + wait;
    let mut id = 424_242;
    loop {
        let attempt = connect(socket, Duration::from_secs(1)).and_then(|stream| {
            stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| error("socket", e))?;
            qapi::Qga::from_stream(&stream).guest_sync(id).map_err(|e| error("guest-sync", e))?;
            stream.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(|e| error("socket", e))?;
            Ok(stream)
        });
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {
                id += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// What a program run through the agent did.
#[derive(Debug)]
pub struct ExecOutcome {
    pub exit_code: Option<i64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `path args` in the guest with `input` on its standard input (sent base64-encoded by
/// the protocol), and waits up to `wait` for it to exit.
pub fn guest_exec(
    stream: &UnixStream,
    path: &str,
    args: &[&str],
    input: Option<&[u8]>,
    wait: Duration,
) -> Result<ExecOutcome, ControlError> {
    let mut agent = qapi::Qga::from_stream(stream);
    let started = agent
        .execute(&qga::guest_exec {
            path: path.to_string(),
            arg: Some(args.iter().map(std::string::ToString::to_string).collect()),
            env: None,
            input_data: input.map(<[u8]>::to_vec),
            capture_output: Some(qga::GuestExecCaptureOutput::flag(true)),
        })
        .map_err(|e| error(&format!("guest-exec {path}"), e))?;
    let deadline = Instant::now() + wait;
    loop {
        let status =
            agent.execute(&qga::guest_exec_status { pid: started.pid }).map_err(|e| error("guest-exec-status", e))?;
        if status.exited {
            return Ok(ExecOutcome {
                exit_code: status.exitcode,
                stdout: status.out_data.unwrap_or_default(),
                stderr: status.err_data.unwrap_or_default(),
            });
        }
        if Instant::now() >= deadline {
            return Err(ControlError(format!("{path} did not finish in {} s", wait.as_secs())));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
