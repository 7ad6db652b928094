//! `ferrisdb cluster controllers list|add|remove`: the replicas of the controller group.
//!
//! `add ADDR` adds a running replica that waits to join (started with `ferrisdb-controller
//! --join`); `remove ADDR` takes one out of the group (the leader refuses a removal that would
//! leave fewer reachable replicas than a quorum). Both go to the group's leader, found by
//! asking the replicas of the cluster file (`ControllerGroup/Identify`), and rewrite the
//! cluster file with the new member list when the command used one.

use std::time::Duration;

use ferrisdb_client::ClusterFile;
use ferrisdb_core::Error;
use ferrisdb_proto::status::from_status;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::controller_group_client::ControllerGroupClient;
use tonic::transport::{Channel, Endpoint};

use super::connect::{Target, default_cluster_file};

/// Bound on each call; adding a replica waits for it to catch up (at most 10 s).
const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// Calls made to find a leader that stays the leader long enough to answer.
const LEADER_ATTEMPTS: u32 = 10;
/// Pause before looking for the leader again.
const LEADER_RETRY_PAUSE: Duration = Duration::from_millis(300);

/// What to do with the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// List every replica with its role, term and last applied index.
    List,
    /// Add the waiting replica at this address.
    Add(String),
    /// Remove the replica at this address.
    Remove(String),
}

fn client(addr: &str) -> Result<ControllerGroupClient<Channel>, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad address {addr:?}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(RPC_TIMEOUT);
    Ok(ControllerGroupClient::new(endpoint.connect_lazy()))
}

async fn identify(addr: &str) -> Result<v1::ControllerReplica, String> {
    client(addr)?
        .identify(v1::IdentifyRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|s| format!("{addr}: {}", from_status(&s)))
}

/// The leader's address, asked of the replicas at `controllers`.
pub(crate) async fn find_leader(
    controllers: &[String],
) -> Result<(String, v1::ControllerReplica), String> {
    let mut errors = Vec::new();
    for addr in controllers {
        match identify(addr).await {
            Ok(r) if r.role == "leader" => return Ok((addr.clone(), r)),
            Ok(r) if !r.leader_address.is_empty() => {
                let leader = r.leader_address.clone();
                return identify(&leader).await.map(|l| (leader, l));
            }
            Ok(r) => errors.push(format!("{addr}: {} and knows no leader", r.role)),
            Err(e) => errors.push(e),
        }
    }
    Err(format!(
        "no leader of the controller group found ({})",
        errors.join("; ")
    ))
}

/// Calls the group's leader with `call`, finding the leader again while the replica called
/// answers that it is not the leader (leadership can move between finding the leader and
/// calling it: right after the group formed, or in an election), at most [`LEADER_ATTEMPTS`]
/// times.
async fn at_leader<T, Fut>(
    controllers: &[String],
    mut leader: String,
    mut call: impl FnMut(ControllerGroupClient<Channel>) -> Fut,
) -> Result<T, String>
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        let err = match call(client(&leader)?).await {
            Ok(answer) => return Ok(answer.into_inner()),
            Err(status) => from_status(&status),
        };
        if !matches!(err, Error::NotLeader(_)) || attempts >= LEADER_ATTEMPTS {
            return Err(err.to_string());
        }
        tokio::time::sleep(LEADER_RETRY_PAUSE).await;
        leader = find_leader(controllers).await?.0;
    }
}

/// Runs `action` against the cluster `target` names.
pub async fn run(target: &Target, action: Action) -> Result<(), String> {
    let controllers = target.connect()?.controllers;
    let (leader, leader_info) = find_leader(&controllers).await?;
    let members = match &action {
        Action::List => {
            print_replicas(&leader_info.members).await;
            return Ok(());
        }
        Action::Add(address) => {
            ClusterFile::new([address.clone()]).map_err(|e| e.to_string())?;
            let new = identify(address).await.map_err(|e| {
                format!(
                    "no controller replica answers at {address} ({e}): start it first with \
                     `ferrisdb-controller --join --listen {address} --data-dir DIR`"
                )
            })?;
            if leader_info.members.iter().any(|m| m.node_id == new.node_id) {
                return Err(format!(
                    "{address} (node {}) is already a member",
                    new.node_id
                ));
            }
            let request = v1::JoinRequest {
                node_id: new.node_id,
                address: address.clone(),
            };
            at_leader(&controllers, leader, |mut group| {
                let request = request.clone();
                async move { group.join(request).await }
            })
            .await
            .map_err(|e| format!("adding {address}: {e}"))?
            .members
        }
        Action::Remove(address) => {
            let request = v1::LeaveRequest {
                address: address.clone(),
            };
            at_leader(&controllers, leader, |mut group| {
                let request = request.clone();
                async move { group.leave(request).await }
            })
            .await
            .map_err(|e| format!("removing {address}: {e}"))?
            .members
        }
    };
    println!("controller group members:");
    print_replicas(&members).await;
    if target.controller.is_none() {
        let path = target
            .cluster_file
            .clone()
            .unwrap_or_else(default_cluster_file);
        let mut file = ClusterFile::load(&path).map_err(|e| e.to_string())?;
        file.controllers = members.iter().map(|m| m.address.clone()).collect();
        if file.cluster_id.is_none() && !leader_info.cluster_id.is_empty() {
            file.cluster_id = Some(leader_info.cluster_id.clone());
        }
        file.store(&path).map_err(|e| e.to_string())?;
        println!("cluster file {} updated", path.display());
    }
    if let Action::Remove(address) = &action {
        println!("{address} is no longer a member: stop its process");
    }
    Ok(())
}

async fn print_replicas(members: &[v1::ControllerMember]) {
    for m in members {
        match identify(&m.address).await {
            Ok(r) => println!(
                "  {:<22} node {:<17} {:<10} term {:<4} applied {}",
                m.address, m.node_id, r.role, r.term, r.last_applied_index
            ),
            Err(_) => println!("  {:<22} node {:<17} unreachable", m.address, m.node_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use ferrisdb_proto::status::to_status;
    use ferrisdb_proto::v1::controller_group_server::{ControllerGroup, ControllerGroupServer};
    use tonic::{Request, Response, Status};

    use super::*;

    /// Which fake replica leads, and where leadership moves on the first join.
    #[derive(Debug, Default)]
    struct Group {
        leader: String,
        moves_to: Option<String>,
        joined_at: Vec<String>,
    }

    #[derive(Clone)]
    struct Replica {
        me: String,
        group: Arc<Mutex<Group>>,
    }

    #[tonic::async_trait]
    impl ControllerGroup for Replica {
        async fn append_entries(
            &self,
            _: Request<v1::RaftMessage>,
        ) -> Result<Response<v1::RaftMessage>, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn vote(
            &self,
            _: Request<v1::RaftMessage>,
        ) -> Result<Response<v1::RaftMessage>, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn install_snapshot(
            &self,
            _: Request<v1::RaftMessage>,
        ) -> Result<Response<v1::RaftMessage>, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn create_cluster(
            &self,
            _: Request<v1::CreateClusterRequest>,
        ) -> Result<Response<v1::CreateClusterResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn identify(
            &self,
            _: Request<v1::IdentifyRequest>,
        ) -> Result<Response<v1::ControllerReplica>, Status> {
            let group = self.group.lock().unwrap();
            Ok(Response::new(v1::ControllerReplica {
                address: self.me.clone(),
                role: if group.leader == self.me {
                    "leader"
                } else {
                    "follower"
                }
                .into(),
                leader_address: group.leader.clone(),
                ..Default::default()
            }))
        }
        async fn join(
            &self,
            request: Request<v1::JoinRequest>,
        ) -> Result<Response<v1::JoinResponse>, Status> {
            let mut group = self.group.lock().unwrap();
            if let Some(next) = group.moves_to.take() {
                group.leader = next;
            }
            if group.leader != self.me {
                return Err(to_status(Error::NotLeader(format!(
                    "this controller replica is not the leader (the leader is at {})",
                    group.leader
                ))));
            }
            group.joined_at.push(self.me.clone());
            let address = request.into_inner().address;
            Ok(Response::new(v1::JoinResponse {
                members: vec![v1::ControllerMember {
                    node_id: 7,
                    address,
                }],
            }))
        }
        async fn leave(
            &self,
            _: Request<v1::LeaveRequest>,
        ) -> Result<Response<v1::LeaveResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }
    }

    async fn serve(group: &Arc<Mutex<Group>>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let me = listener.local_addr().unwrap().to_string();
        let replica = Replica {
            me: me.clone(),
            group: group.clone(),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ControllerGroupServer::new(replica))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        me
    }

    #[tokio::test]
    async fn a_call_the_old_leader_refuses_goes_to_the_new_one() {
        let group = Arc::new(Mutex::new(Group::default()));
        let first = serve(&group).await;
        let second = serve(&group).await;
        {
            let mut g = group.lock().unwrap();
            g.leader = first.clone();
            g.moves_to = Some(second.clone());
        }
        let controllers = vec![first.clone()];
        let (leader, _) = find_leader(&controllers).await.unwrap();
        assert_eq!(leader, first);
        let request = v1::JoinRequest {
            node_id: 7,
            address: "127.0.0.1:1".into(),
        };
        let answer = at_leader(&controllers, leader, |mut group| {
            let request = request.clone();
            async move { group.join(request).await }
        })
        .await
        .unwrap();
        assert_eq!(answer.members.len(), 1);
        assert_eq!(group.lock().unwrap().joined_at, vec![second]);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let group = Arc::new(Mutex::new(Group::default()));
        let only = serve(&group).await;
        group.lock().unwrap().leader = only.clone();
        let controllers = vec![only.clone()];
        let err = at_leader(&controllers, only, |mut group| async move {
            group
                .leave(v1::LeaveRequest {
                    address: "x".into(),
                })
                .await
        })
        .await
        .unwrap_err();
        assert!(err.contains("fake"), "{err}");
    }
}
