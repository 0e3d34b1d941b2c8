use cairn_ring::*;
fn nd(r: u32, z: u32, n: u32, d: u32, w: f64) -> NewDevice {
    NewDevice {
        id: None,
        region: r,
        zone: z,
        ip: format!("10.{r}.{z}.{n}"),
        port: 6200,
        replication_ip: None,
        replication_port: None,
        device: format!("d{d}"),
        weight: w,
        meta: String::new(),
    }
}
#[test]
fn scratch() {
    let mut b = RingBuilder::new(10, 3.0, 0).unwrap();
    for r in 1..=2 {
        for z in 1..=2 {
            for n in 0..3 {
                for d in 0..2 {
                    b.add_device(nd(r, z, n, d, 100.0)).unwrap();
                }
            }
        }
    }
    b.rebalance(RebalanceOptions {
        seed: 7,
        now_minutes: 1,
    })
    .unwrap();
    for z in 1..=2 {
        for n in 0..3 {
            for d in 0..2 {
                b.add_device(nd(3, z, n, d, 100.0)).unwrap();
            }
        }
    }
    let o = b
        .rebalance(RebalanceOptions {
            seed: 8,
            now_minutes: 2,
        })
        .unwrap();
    eprintln!("{o:?}");
}
