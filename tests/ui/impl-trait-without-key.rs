use memorix::cached;

#[cached]
fn total(items: impl Iterator<Item = u32>) -> u32 {
    items.sum()
}

fn main() {}
