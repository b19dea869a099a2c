use memorix::cached;

#[cached(ttl = 60)]
fn name(id: &str) -> &str {
    id
}

#[cached(ttl = 60)]
fn maybe(id: u32) -> Option<&'static str> {
    let _ = id;
    None
}

fn main() {}
