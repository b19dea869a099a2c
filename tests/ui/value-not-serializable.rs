use memorix::cached;

#[derive(Debug, Clone)]
struct Report {
    total: u64,
}

#[cached(ttl = 60)]
fn report(id: u64) -> Option<Report> {
    Some(Report { total: id })
}

struct Query {
    text: String,
}

#[cached]
fn search(query: Query) -> Vec<u64> {
    vec![query.text.len() as u64]
}

fn main() {
    let _ = report_prime(1, Report { total: 1 });
}
