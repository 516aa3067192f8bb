//! `tollgate-agent-libvirt`: the agent's hypervisor helper. It links libvirt's C library, opens the URI it is
//! given on the first request, and runs the host tasks `tollgate-agent` writes to its input, one JSON line
//! each, answering each on its output, until the input closes. The agent starts it; it is not run by hand.

use std::process::ExitCode;
use tollgate_collector::helper;
use tollgate_control::hypervisor::libvirt::Libvirt;
use tollgate_control::hypervisor::Hypervisor;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut uri, mut virt_type, mut bridge) = (None, None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--libvirt-uri" => uri = args.next(),
            "--virt-type" => virt_type = args.next(),
            "--guest-bridge" => bridge = args.next(),
            other => {
                eprintln!(
                    "tollgate-agent-libvirt: unknown argument {other:?}; this helper is started by tollgate-agent"
                );
                return ExitCode::from(2);
            }
        }
    }
    let Some(uri) = uri else {
        eprintln!("tollgate-agent-libvirt: no --libvirt-uri; this helper is started by tollgate-agent");
        return ExitCode::from(2);
    };
    let open = move || {
        let libvirt = Libvirt::connect_as(&uri, virt_type.as_deref())?.with_guest_bridge(bridge.clone())?;
        Ok(Box::new(libvirt) as Box<dyn Hypervisor>)
    };
    match helper::serve(open, std::io::stdin().lock(), std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-agent-libvirt: {e}");
            ExitCode::from(1)
        }
    }
}
