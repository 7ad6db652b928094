//! The end-of-run check of a replicated simulated cluster: the storage servers holding the
//! same shard hold the same pairs. A client reads each key from one replica only, so a
//! replica that lost a write, or applied one twice, would otherwise go unseen.

use std::time::Duration;

use bytes::Bytes;
use ferrisdb_client::Database;
use tokio::time::Instant;

use super::boot::server_addr;
use super::process::ProcessId;

/// How long the replicas have, after the faults, to answer at one read version.
const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// Every pair a storage server holds at `version`, read straight from it (not through a
/// client, which reads each key from one replica).
async fn pairs_at(process: ProcessId, version: u64) -> Result<Vec<(Bytes, Bytes)>, String> {
    use ferrisdb_proto::v1;
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server_addr(process)))
            .map_err(|e| e.to_string())?;
    let mut client = v1::storage_server_client::StorageServerClient::new(
        ferrisdb_proto::transport::channel(&endpoint),
    );
    let request = v1::StorageGetRangeRequest {
        begin: Bytes::new(),
        end: Bytes::new(),
        version,
        limit: 0,
        reverse: false,
    };
    let mut stream = client
        .get_range(request)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut pairs = Vec::new();
    while let Some(batch) = stream.message().await.map_err(|e| e.to_string())? {
        pairs.extend(batch.pairs.into_iter().map(|kv| (kv.key, kv.value)));
    }
    Ok(pairs)
}

/// After the faults: both storage replicas hold exactly the same pairs at one read version
/// (each may need a while to catch up to it).
pub async fn agree(db: Database, replicas: [ProcessId; 2]) -> Result<(), String> {
    let deadline = Instant::now() + CHECK_LIMIT;
    let version = loop {
        match db.read_version(ferrisdb_client::Priority::Default).await {
            Ok(version) => break version.0,
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("no read version for the replica check: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let mut contents = Vec::new();
    for process in replicas {
        let pairs = loop {
            match pairs_at(process, version).await {
                Ok(pairs) => break pairs,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!(
                        "storage server {process} did not answer a read of everything at \
                         version {version}: {e}"
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        contents.push(pairs);
    }
    let (a, b) = (&contents[0], &contents[1]);
    if a != b {
        let first = a
            .iter()
            .zip(b.iter())
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        let show = |pairs: &[(Bytes, Bytes)]| {
            pairs
                .get(first)
                .map_or("nothing".to_string(), |(k, v)| format!("{k:?} = {v:?}"))
        };
        return Err(format!(
            "the storage replicas differ at version {version}: {} holds {} pairs, {} holds {}; \
             pair {first}: {} against {}",
            replicas[0],
            a.len(),
            replicas[1],
            b.len(),
            show(a),
            show(b)
        ));
    }
    if a.is_empty() {
        return Err(format!(
            "both storage replicas are empty at version {version}"
        ));
    }
    Ok(())
}
