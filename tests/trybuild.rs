//! Compile errors of the attribute macros: each case in `tests/ui/` is a
//! mistake, and its `.stderr` is the message users see. Cases in
//! `tests/ui/pass/` must compile without a single warning.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
