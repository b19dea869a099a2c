use memorix::cached;

#[cached(ttl = 60, tll = 30, refresh)]
fn load(id: u32) -> u32 {
    id
}

fn main() {
    // The function is still emitted next to the errors, so callers compile.
    let _ = load(1);
}
