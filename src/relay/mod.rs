//! The relay `srvd` and the data-plane bridge `srv` (noports.md §4, §5.6, §9.5, §9.6).
//!
//! - [`session`]: the public face, [`SessionTable`]: ports (two per session, or one shared
//!   port), limits, the session tasks it owns; library-level, so tests drive it with real
//!   sockets and no atServer. Behind it, each file importing only those after it:
//!   `pairing` (one session: queues, pairing, splicing, expiry, report), `accept` (accept
//!   loops, auth lines, per-source limits), `table` (live sessions and routes, one lock never
//!   held across an await), `types` (what they share) and `nonce`.
//! - `srvd`: the applet: atProtocol glue (monitor `request_ports`, fetch keys, reply N4).
//! - `srv`: the applet shell around `tunnel` (RV_* environment, readiness line,
//!   exit 200).
//!
//! Run: `srvd -a @relay -i relay.example.net [--port-range 40000-40999 | --port-range 443-443]
//! [--allow @alice,@bob]`.
use std::process::ExitCode;

mod accept;
mod nonce;
mod pairing;
pub mod session;
mod srv;
mod srvd;
mod table;
mod types;

pub use session::{
    EndReason, RelayConfig, RelayError, SessionPorts, SessionReport, SessionSpec, SessionTable,
};

/// Entry point of the `srvd` applet; `argv[0]` is the applet name.
pub fn srvd_main(argv: &[String]) -> ExitCode {
    srvd::main(argv)
}

/// Entry point of the `srv` applet; `argv[0]` is the applet name.
pub fn srv_main(argv: &[String]) -> ExitCode {
    srv::main(argv)
}

#[cfg(test)]
mod tests {
    /// The files of this module import each other in one direction only (style.md §b): no
    /// file reaches, through `use super::…`, a file that reaches it back.
    #[test]
    fn relay_files_import_each_other_without_a_cycle() {
        let files: [(&str, &str); 8] = [
            ("accept", include_str!("accept.rs")),
            ("nonce", include_str!("nonce.rs")),
            ("pairing", include_str!("pairing.rs")),
            ("session", include_str!("session.rs")),
            ("srv", include_str!("srv.rs")),
            ("srvd", include_str!("srvd.rs")),
            ("table", include_str!("table.rs")),
            ("types", include_str!("types.rs")),
        ];
        let imports = |text: &str| -> Vec<usize> {
            let mut to: Vec<usize> = text
                .lines()
                .map(|l| l.trim_start().trim_start_matches("pub "))
                .filter_map(|l| l.strip_prefix("use super::"))
                .filter_map(|rest| {
                    let name = rest.split("::").next()?;
                    files.iter().position(|(n, _)| *n == name)
                })
                .collect();
            to.sort_unstable();
            to.dedup();
            to
        };
        let graph: Vec<Vec<usize>> = files.iter().map(|(_, t)| imports(t)).collect();
        assert!(graph[7].is_empty(), "types.rs is a leaf");
        // Depth-first search; a file met again while still on the path closes a cycle.
        fn visit(n: usize, g: &[Vec<usize>], path: &mut Vec<usize>, done: &mut [bool]) {
            assert!(!path.contains(&n), "import cycle through {path:?} -> {n}");
            if done[n] {
                return;
            }
            path.push(n);
            for &m in &g[n] {
                visit(m, g, path, done);
            }
            path.pop();
            done[n] = true;
        }
        let mut done = [false; 8];
        for n in 0..files.len() {
            visit(n, &graph, &mut Vec::new(), &mut done);
        }
        let expected: [&[usize]; 8] = [
            &[6, 7],          // accept -> table, types
            &[],              // nonce
            &[0, 6, 7],       // pairing -> accept, table, types
            &[0, 1, 2, 6, 7], // session -> accept, nonce, pairing, table, types
            &[],              // srv
            &[3, 7],          // srvd -> session, types
            &[7],             // table -> types
            &[],              // types
        ];
        assert_eq!(graph, expected.map(<[usize]>::to_vec));
    }
}
