//! Gas used per operation, per complete job and per session, printed for
//! docs/PERFORMANCE.md. Gas is deterministic, so the targets for a complete ERC-20 job (200k),
//! ETH job (180k) and ERC-20 session open + close (160k) are asserted.

mod measure;

use crate::common::Env;
use measure::{ERC20_JOB_TARGET, ERC20_SESSION_TARGET, ETH_JOB_TARGET, Payment};

#[tokio::test]
async fn gas_per_operation() {
    let env = Env::new().await;
    let figures = measure::measure(&env).await;
    figures.print_table();
    let steady = figures.job(Payment::UsdcApproved).total();
    assert!(
        steady <= ERC20_JOB_TARGET,
        "steady ERC-20 job used {steady} gas"
    );
    let eth = figures.job(Payment::Eth).total();
    assert!(eth <= ETH_JOB_TARGET, "steady ETH job used {eth} gas");
    let session = figures.session(Payment::UsdcApproved).open_close();
    assert!(
        session <= ERC20_SESSION_TARGET,
        "steady ERC-20 session open + close used {session} gas"
    );
    env.finish().await;
}
