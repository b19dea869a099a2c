use memorix::cached;

#[cached(ttl = true, key = 5, codec = "yaml", lock = "global", jitter = "5 parsecs")]
fn load(id: u32) -> u32 {
    id
}

fn main() {}
