//! `ferrisdb cluster exclude ADDR...` and `include ADDR...`: draining storage servers.
//!
//! `exclude` asks the controller group's leader (`ClusterController/ExcludeServers`) to exclude
//! every storage server registered at each address: the data distributor moves their shards
//! to the other servers (reading from the excluded ones meanwhile) and gives them none. It
//! prints what each still holds; with `--wait` it follows the shard map until none holds
//! anything and then says it is safe to turn them off. `include` undoes an exclusion.

use std::collections::BTreeMap;
use std::time::Duration;

use ferrisdb_proto::status::from_status;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::cluster_controller_client::ClusterControllerClient;
use tonic::transport::{Channel, Endpoint};

use super::connect::Target;
use super::controllers::find_leader;

/// Bound on each call.
const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// How often `--wait` looks at the shard map.
const POLL: Duration = Duration::from_millis(500);

fn client(addr: &str) -> Result<ClusterControllerClient<Channel>, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad address {addr:?}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(RPC_TIMEOUT);
    Ok(ClusterControllerClient::new(endpoint.connect_lazy()))
}

/// Excludes (or, with `include`, includes again) the storage servers at `addresses`; with
/// `wait`, returns only once the excluded ones hold no shard.
pub async fn run(
    target: &Target,
    addresses: Vec<String>,
    include: bool,
    wait: bool,
) -> Result<(), String> {
    if addresses.is_empty() {
        return Err("name at least one storage server address (host:port)".into());
    }
    let controllers = target.connect()?.controllers;
    let (leader, _) = find_leader(&controllers).await?;
    let servers = client(&leader)?
        .exclude_servers(v1::ExcludeServersRequest {
            addresses: addresses.clone(),
            include,
        })
        .await
        .map_err(|s| from_status(&s).to_string())?
        .into_inner()
        .servers;
    for s in &servers {
        println!(
            "{}",
            describe(s.excluded, &s.worker_id, &s.address, s.shards)
        );
    }
    if include || !wait {
        return Ok(());
    }
    let ids: Vec<String> = servers.iter().map(|s| s.worker_id.clone()).collect();
    let mut last: BTreeMap<String, u32> = servers
        .iter()
        .map(|s| (s.worker_id.clone(), s.shards))
        .collect();
    while last.values().any(|&n| n > 0) {
        tokio::time::sleep(POLL).await;
        let controllers = target.connect()?.controllers;
        let Ok((leader, _)) = find_leader(&controllers).await else {
            continue;
        };
        let Ok(state) = client(&leader)?
            .get_cluster_state(v1::GetClusterStateRequest {})
            .await
        else {
            continue;
        };
        let state = state.into_inner();
        let map = state.shard_map.unwrap_or_default();
        for id in &ids {
            let held = map
                .shards
                .iter()
                .filter(|s| s.storage_ids.contains(id) || s.moving_to.contains(id))
                .count() as u32;
            if last.get(id) != Some(&held) {
                let address = state
                    .workers
                    .iter()
                    .find(|w| w.worker_id == *id)
                    .map(|w| w.address.clone())
                    .unwrap_or_default();
                println!("{}", describe(true, id, &address, held));
                last.insert(id.clone(), held);
            }
        }
    }
    Ok(())
}

fn describe(excluded: bool, id: &str, address: &str, shards: u32) -> String {
    match (excluded, shards) {
        (false, _) => format!("{id} at {address}: included (it may receive shards again)"),
        (true, 0) => format!("{id} at {address}: excluded and holds no shard: safe to turn off"),
        (true, n) => format!(
            "{id} at {address}: excluded, {n} shard(s) still to move away (not yet safe to turn \
             off)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_when_an_excluded_server_is_safe_to_turn_off() {
        assert!(describe(true, "s1", "h:1", 0).contains("safe to turn off"));
        assert!(describe(true, "s1", "h:1", 3).contains("3 shard(s) still to move away"));
        assert!(describe(false, "s1", "h:1", 3).contains("included"));
    }
}
