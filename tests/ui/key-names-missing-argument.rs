use memorix::cached;

#[cached(key = "user:{user_id}:{lang}")]
async fn load(id: u32, lang: String) -> String {
    format!("{id}{lang}")
}

fn main() {}
