//! Gas per operation, per complete job (post, claim, submit) and per session (open, partial
//! settle, close with the receipt) for the three payment paths: ETH, USDC with the approval
//! already given, and USDC by permit. Measured on a fresh anvil
//! chain by the code the test `gas::gas_per_operation` runs (`tests/it/gas/measure.rs`);
//! writes the `gas` section of `bench/results.json` and prints the table. Part of
//! `cargo xtask bench`; gas is deterministic, so one run is the figure.

#![allow(clippy::unwrap_used)] // A benchmark: set-up failures abort it.

#[path = "../tests/it/common.rs"]
#[allow(dead_code, unused_imports, unused_macros)]
// The tests' set-up, of which the measurement needs a part.
mod common;
#[path = "../tests/it/gas/measure.rs"]
mod measure;
#[path = "../../../bench/results.rs"]
mod results;

use std::path::Path;

use measure::{
    ERC20_JOB_TARGET, ERC20_SESSION_TARGET, ETH_JOB_TARGET, GasFigures, JobGas, Payment, SessionGas,
};
use serde_json::{Value, json};

fn job(gas: JobGas) -> Value {
    json!({
        "post": gas.post,
        "claim": gas.claim,
        "submit": gas.submit,
        "total": gas.total(),
    })
}

fn session(gas: SessionGas) -> Value {
    json!({
        "open": gas.open,
        "close_with_receipt": gas.close,
        "open_close": gas.open_close(),
        "settle_partial": gas.settle,
        "close_after_partial": gas.close_after_settle,
        "per_prompt": 0,
    })
}

fn section(figures: &GasFigures) -> Value {
    let eth = figures.job(Payment::Eth);
    let usdc = figures.job(Payment::UsdcApproved);
    let permit = figures.job(Payment::UsdcPermit);
    json!({
        "setup": "anvil from .tools (`cargo xtask tools`), contracts-abi/ artifacts; jobs of \
                  1,000 max tokens, 700 used, a 59-byte CID; steady state: the path's first \
                  job already ran and another job's funds are in escrow; sessions of a 1,000-token \
                  deposit closed with a 700-token receipt (300 settled on the way for the \
                  partial figures)",
        "operations": {
            "register": figures.register,
            "postJob_eth": eth.post,
            "postJobWithToken_usdc_approved": usdc.post,
            "postJobWithPermit_usdc": permit.post,
            "claimJob": usdc.claim,
            "submitResult_eth": eth.submit,
            "submitResult_usdc": usdc.submit,
            "cancelJob_eth": figures.cancel_eth,
        },
        "complete_job": {
            "eth": job(eth),
            "usdc_approved": job(usdc),
            "usdc_permit": job(permit),
        },
        "usdc_approved_first_job": job(figures.first_usdc_job),
        "session": {
            "eth": session(figures.session(Payment::Eth)),
            "usdc_approved": session(figures.session(Payment::UsdcApproved)),
            "usdc_permit": session(figures.session(Payment::UsdcPermit)),
        },
        "erc20_session_target": ERC20_SESSION_TARGET,
        "erc20_job_target": ERC20_JOB_TARGET,
        "eth_job_target": ETH_JOB_TARGET,
    })
}

fn main() {
    // `cargo bench` passes flags such as `--bench`; this harness takes none.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let figures = runtime.block_on(async {
        let env = common::Env::new().await;
        let figures = measure::measure(&env).await;
        env.finish().await;
        figures
    });
    figures.print_table();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/results.json");
    results::write_section(&file, "gas", section(&figures)).unwrap();
    println!("gas written to bench/results.json");
}
