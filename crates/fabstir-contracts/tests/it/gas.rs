//! Gas used per operation and per complete job, printed for docs/PERFORMANCE.md. Gas is
//! deterministic, so the targets for a complete ERC-20 job (200k) and ETH job (180k) are
//! asserted.

mod measure;

use crate::common::Env;
use measure::{ERC20_JOB_TARGET, ETH_JOB_TARGET, Payment};

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
    env.finish().await;
}
