//! `ring-tool`: build, rebalance, inspect and compile Cairn rings.
//!
//! Accepts swift-ring-builder's argument syntax (`ring-tool object.builder add
//! r1z1-127.0.0.1:6200/sda 100`) so operators' scripts carry over. All ring logic lives in
//! `cairn-ring`; this binary parses arguments, reads and writes files, and prints.

mod cli;
mod commands;
mod devspec;
mod files;
mod render;
mod simulate;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, EXIT_ERROR};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let (builder, cli) = match parse(args) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    match run(builder, cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// `ring-tool <builder> <command> ...` or a command that needs no builder file.
fn parse(args: Vec<OsString>) -> Result<(Option<std::path::PathBuf>, Cli), clap::Error> {
    // `--json` may stand anywhere (`ring-tool --json b show`, `ring-tool b --json rebalance`):
    // take it out before deciding which argument is the builder file.
    let json = args.iter().skip(1).any(|a| a == "--json");
    let args: Vec<OsString> = args
        .into_iter()
        .enumerate()
        .filter(|(i, a)| *i == 0 || a != "--json")
        .map(|(_, a)| a)
        .collect();
    let first = args.get(1).and_then(|a| a.to_str());
    let needs_no_builder = match first {
        None => !json,
        Some(f) => f.starts_with('-') || f == "simulate" || f == "help",
    };
    let with_json = |mut cli: Cli| {
        cli.json |= json;
        cli
    };
    if needs_no_builder {
        return Cli::try_parse_from(args).map(|cli| (None, with_json(cli)));
    }
    let Some(builder) = args.get(1).cloned() else {
        return Cli::try_parse_from(args).map(|cli| (None, with_json(cli)));
    };
    let mut rest: Vec<OsString> = Vec::with_capacity(args.len());
    // Shown in usage lines: `ring-tool object.builder rebalance [OPTIONS]`.
    let mut program = OsString::from("ring-tool ");
    program.push(&builder);
    rest.push(program);
    rest.extend(args[2..].iter().cloned());
    // Like swift-ring-builder, a builder file alone means "show it".
    if rest.len() == 1 {
        rest.push("show".into());
    }
    Cli::try_parse_from(rest).map(|cli| (Some(builder.into()), with_json(cli)))
}

fn run(builder: Option<std::path::PathBuf>, cli: Cli) -> anyhow::Result<u8> {
    let json = cli.json;
    if let Command::Simulate(args) = cli.command {
        return simulate::run(&args, json);
    }
    let Some(path) = builder else {
        anyhow::bail!("this command needs a builder file: ring-tool <BUILDER_FILE> <COMMAND>");
    };
    commands::run(&path, cli.command, json)
}
