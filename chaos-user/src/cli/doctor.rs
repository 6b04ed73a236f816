//! `chaos doctor`: the kernel-features probe on its own, and which container runtimes answer
//! (what `--container`, `--pod` and `--selector` resolve through).
use std::{fmt::Write as _, process::ExitCode};

use crate::{
    features::{self, Check, KernelFeatures},
    os::{cgroup::CgroupFs, cgroup_files::controllers},
    report::OutputFormat,
    targets::runtime,
};

pub fn run(output: OutputFormat) -> ExitCode {
    let features = features::probe();
    let runtimes = runtime::status();
    let controllers = CgroupFs::discover().map(|fs| controllers::status(fs.mount())).unwrap_or_default();
    match output {
        OutputFormat::Json => {
            let mut json = serde_json::to_value(&features).expect("features serialize");
            json["container_runtimes"] = runtimes
                .iter()
                .map(|(socket, answer)| match answer {
                    Ok(containers) => {
                        serde_json::json!({ "socket": socket, "answers": true, "containers": containers })
                    }
                    Err(why) => serde_json::json!({ "socket": socket, "answers": false, "reason": why }),
                })
                .collect();
            json["controllers"] = serde_json::to_value(&controllers).expect("controllers serialize");
            println!("{}", serde_json::to_string_pretty(&json).expect("json"));
        }
        OutputFormat::Text => {
            print!("{}", render(&features));
            println!("\ncgroup v2 controllers (chaos limit)");
            for controller in &controllers {
                println!("  {} {:<18} {}", mark(controller.in_cgroup2), controller.name, controller.detail);
            }
            println!("\nContainer runtimes (--container, --pod, --selector)");
            for (socket, answer) in &runtimes {
                match answer {
                    Ok(containers) => println!("  yes {socket:<50} {containers} containers"),
                    Err(why) => println!("  no  {socket:<50} {why}"),
                }
            }
        }
    }
    ExitCode::SUCCESS
}

fn mark(ok: bool) -> &'static str {
    if ok { "yes" } else { "no " }
}

fn line(out: &mut String, name: &str, check: &Check) {
    let _ = writeln!(out, "  {} {name:<18} {}", mark(check.ok), check.detail);
}

fn render(f: &KernelFeatures) -> String {
    let mut out = format!("chaos doctor: kernel {}\n\nBasics\n", f.kernel);
    let b = &f.basics;
    line(&mut out, "BTF", &b.btf);
    line(&mut out, "cgroup v2", &b.cgroup2);
    line(&mut out, "bpffs", &b.bpffs);
    line(&mut out, "privileges", &b.privileges);
    let _ = writeln!(out, "  --- {:<18} {}", "TC attach", b.tc_api_detail);
    let _ = writeln!(out, "  --- {:<18} {}", "active LSMs", b.active_lsms_detail);
    out.push_str("\nFault families\n");
    for family in &f.families {
        let detail = family.reason.as_deref().unwrap_or(&family.mechanism);
        let shipped = if family.in_chaos { "" } else { " [not in this version of chaos yet]" };
        let _ = writeln!(out, "  {} {:<38} {detail}{shipped}", mark(family.supported), family.name);
    }
    out.push_str("\nProgram types, helpers, qdiscs\n");
    for (name, check) in f.program_types.iter().chain(&f.helpers).chain(&f.qdiscs) {
        line(&mut out, name, check);
    }
    out
}
