use memorix::cached;

#[cached(encrypt, codec = "raw")]
fn token(id: u32) -> String {
    id.to_string()
}

fn main() {}
