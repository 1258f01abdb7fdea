//! `rotator agents`: issue an enrollment code for a host agent, list the agents, revoke one.

use std::path::Path;
use std::process::ExitCode;

use entra_rotator::domain::Span;
use entra_rotator::domain::ids::AgentId;
use entra_rotator::usecases::agents;
use serde_json::json;

use crate::caller::operator;
use crate::output::{Output, table, when};
use crate::rotate::services;

pub async fn enroll(config_path: &Path, name: &str, valid_for: Span, out: Output) -> anyhow::Result<ExitCode> {
    let (s, _data) = services(config_path)?;
    let valid_for = time::Duration::try_from(valid_for.as_duration())?;
    let (agent, code) = agents::issue_enrollment(&s, name, &operator(), valid_for).await?;
    let expires = agent.enrollment.as_ref().map(|e| e.expires_at);
    if out.json {
        out.print_json(&json!({
            "agent_id": agent.id, "name": agent.name, "code": code.grouped().as_str(), "expires_at": when(expires),
        }))?;
    } else {
        println!("Agent {} ({}) may enroll once, until {}, with the code", agent.name, agent.id, when(expires));
        println!();
        println!("    {}", code.grouped().as_str());
        println!();
        println!("On the host: rotator-agent enroll --server <this server's URL> --code <the code>");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list(config_path: &Path, out: Output) -> anyhow::Result<ExitCode> {
    let (s, _data) = services(config_path)?;
    let all = agents::list(&s).await?;
    if out.json {
        out.print_json(&json!({ "agents": all }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("No agents yet: `rotator agents enroll NAME` issues the code a host enrolls with.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["name", "id", "state", "last heartbeat", "host", "version", "can write", "used by"]);
    for a in &all {
        let mut can = a.capabilities.file_formats.join(", ");
        if a.capabilities.iis {
            can.push_str(if can.is_empty() { "IIS" } else { ", IIS" });
        }
        t.add_row(vec![
            a.name.clone(),
            a.id.to_string(),
            a.state.to_owned(),
            when(a.last_heartbeat),
            if a.os.is_empty() { a.hostname.clone() } else { format!("{} ({})", a.hostname, a.os) },
            a.version.clone(),
            can,
            if a.used_by.is_empty() { "-".to_owned() } else { a.used_by.join("\n") },
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke(config_path: &Path, id: &str, out: Output) -> anyhow::Result<ExitCode> {
    let id = AgentId::parse(id)?;
    let (s, _data) = services(config_path)?;
    let agent = agents::revoke(&s, id, &operator()).await?;
    if out.json {
        out.print_json(&json!({ "agent_id": agent.id, "name": agent.name, "state": "revoked" }))?;
    } else {
        println!("Revoked agent {} ({}): it gets nothing from now on.", agent.name, agent.id);
    }
    Ok(ExitCode::SUCCESS)
}
