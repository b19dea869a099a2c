use memorix::cached;

#[cached(key = "push:{n}")]
fn push(log: &mut Vec<u32>, n: u32) -> usize {
    log.push(n);
    log.len()
}

struct Counter {
    hits: u32,
}

impl Counter {
    #[cached(key = "bump:{n}")]
    fn bump(&mut self, n: u32) -> u32 {
        self.hits += n;
        self.hits
    }
}

fn main() {}
