use memorix::cached;

struct Repo {
    id: u32,
}

impl Repo {
    #[cached(ttl = 60)]
    fn item(&self, n: u32) -> u32 {
        self.id + n
    }
}

fn main() {
    let repo = Repo { id: 1 };
    // The companions still exist: no second error here.
    let _ = repo.item_cache_key(2);
}
