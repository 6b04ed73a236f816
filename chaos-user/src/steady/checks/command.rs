//! The command check: a program exits with the expected code, optionally printing a string.
use std::process::Stdio;

pub(crate) async fn attempt(argv: &[String], exit_code: i32, stdout_contains: Option<&str>) -> Result<String, String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let code = output.status.code();
    if code != Some(exit_code) {
        return Err(code.map_or_else(
            || format!("killed by a signal ({})", output.status),
            |c| format!("exit {c}, expected {exit_code}"),
        ));
    }
    if let Some(text) = stdout_contains
        && !String::from_utf8_lossy(&output.stdout).contains(text)
    {
        return Err(format!("exit {exit_code} but the output does not contain {text:?}"));
    }
    Ok(format!("exit {exit_code}"))
}
