//! Tests of `error`.

use ethers::abi::AbiEncode;

use super::*;

#[test]
fn custom_errors_decode_into_named_causes() {
    let data = job_marketplace::JobAlreadyClaimed {
        job_id: U256::from(7u64),
    }
    .encode();
    assert!(matches!(
        Error::from_revert_data(&data),
        Error::JobAlreadyClaimed { job: JobId(7), .. }
    ));
    let data = job_marketplace::TermsMismatch {
        job_id: U256::from(9u64),
    }
    .encode();
    assert_eq!(
        Error::from_revert_data(&data).to_string(),
        "the terms passed for job 9 are not its terms"
    );
    let token = Address::repeat_byte(1);
    let data = job_marketplace::TokenNotAccepted { token }.encode();
    assert_eq!(
        Error::from_revert_data(&data).to_string(),
        "token 0x0101010101010101010101010101010101010101 is not accepted for payment"
    );
    let data = node_registry::StakeTooLow {
        stake: U256::from(1u64),
        minimum: U256::from(2u64),
    }
    .encode();
    assert!(matches!(
        Error::from_revert_data(&data),
        Error::StakeTooLow { .. }
    ));
}

#[test]
fn strings_and_unknown_data_are_kept_readable() {
    let data = job_marketplace::JobMarketplaceErrors::RevertString("USDT: nope".into()).encode();
    let mut with_selector = vec![0x08, 0xc3, 0x79, 0xa0];
    with_selector.extend(data);
    assert!(
        matches!(Error::from_revert_data(&with_selector), Error::Reverted(m) if m == "USDT: nope")
    );
    assert!(
        Error::from_revert_data(&[])
            .to_string()
            .contains("no reason")
    );
    let unknown = Error::from_revert_data(&[0xde, 0xad, 0xbe, 0xef, 0]);
    assert!(unknown.to_string().contains("0xdeadbeef"), "{unknown}");
}
