//! [`ControllerGroup`]: this replica's place in the controller group. It runs the Raft node,
//! forms a new group or joins an existing one, answers whether this replica leads (fenced by
//! a quorum round, so a deposed leader learns it before it acts), proposes commands, and adds
//! and removes replicas.
//!
//! Forming: a replica with no Raft state asks every address in `--peers` who they are. If one
//! of them already belongs to a group, the replica asks that group's leader to add it (a
//! replica at the same address with another node id, one whose disk was wiped, is replaced).
//! If none does and all answered, the first address of the list initialises the group with
//! every peer as a voter; the others wait to hear from the leader. A replica started with
//! `--join` never initialises a group: it waits to be added.

use crate::worker::DataDir;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ferrisdb_core::Error;
use ferrisdb_proto::v1;
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, ServerState};

use super::metadata::Metadata;
use super::raft::log_store::LogStore;
use super::raft::network::PeerNetwork;
use super::raft::state_machine::StateMachine;
use super::raft::{Command, CommandOutcome, ControllerRaft, NodeId, node_id};

/// Raft timings of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTimings {
    /// How often the leader heartbeats the followers.
    pub heartbeat: Duration,
    /// A follower that hears nothing for a random time in `[election_min, election_max)`
    /// starts an election.
    pub election_min: Duration,
    /// See `election_min`.
    pub election_max: Duration,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat: Duration::from_millis(75),
            election_min: Duration::from_millis(250),
            election_max: Duration::from_millis(450),
        }
    }
}

/// How long the replicas' statuses are reused (while the members are the same).
const STATUS_CACHE: Duration = Duration::from_millis(500);

/// The replicas' statuses, when they were asked and the members they were asked of.
type CachedStatuses = Option<(
    tokio::time::Instant,
    BTreeMap<NodeId, String>,
    Vec<v1::ControllerReplicaStatus>,
)>;

/// How long a request waits for an election under way to end.
const LEADER_WAIT: Duration = Duration::from_secs(2);

/// This replica of the controller group.
#[derive(Clone)]
pub struct ControllerGroup {
    raft: ControllerRaft,
    node_id: NodeId,
    address: String,
    state: StateMachine,
    network: PeerNetwork,
    statuses: Arc<parking_lot::Mutex<CachedStatuses>>,
}

impl std::fmt::Debug for ControllerGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerGroup")
            .field("node_id", &self.node_id)
            .field("address", &self.address)
            .finish()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl ControllerGroup {
    /// Opens the replica's Raft state in `dir` and starts its Raft node; `address` is where
    /// the other replicas reach it.
    /// Connections to the other replicas leave from `peer_source_ip` when given.
    pub async fn open(
        dir: &DataDir,
        address: String,
        timings: RaftTimings,
        peer_source_ip: Option<std::net::IpAddr>,
    ) -> Result<Self, Error> {
        let DataDir { fs, path } = dir.clone();
        let (node_id, log_store, state) =
            crate::exec::blocking("opening the Raft state", move || {
                let (node_id, _) = node_id::load_or_create(fs.as_ref(), &path)?;
                Ok::<_, Error>((
                    node_id,
                    LogStore::open(fs.clone(), &path)?,
                    StateMachine::open(fs, &path)?,
                ))
            })
            .await??;
        let config = openraft::Config {
            cluster_name: "ferrisdb-controller".into(),
            heartbeat_interval: ms(timings.heartbeat),
            election_timeout_min: ms(timings.election_min),
            election_timeout_max: ms(timings.election_max).max(ms(timings.election_min) + 1),
            install_snapshot_timeout: 5_000,
            // Each shard-map change carries the whole map: a replica far behind (one that
            // rejoined with an empty disk) is sent its backlog a few entries at a time, so each
            // message is encoded and sent well within the AppendEntries timeout. With
            // openraft's default of 300, a backlog of data-distribution changes never fitted:
            // the leader re-encoded it on every retry and, starved of CPU, lost its quorum.
            max_payload_entries: 16,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1_000),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::InvalidArgument(format!("Raft timings: {e}")))?;
        let network = PeerNetwork::new(node_id, state.clone(), peer_source_ip);
        let raft = ControllerRaft::new(
            node_id,
            Arc::new(config),
            network.clone(),
            log_store,
            state.clone(),
        )
        .await
        .map_err(|e| Error::Internal(format!("starting the Raft node: {e}")))?;
        tracing::info!(node_id, %address, "controller replica started");
        Ok(ControllerGroup {
            raft,
            node_id,
            address,
            state,
            network,
            statuses: Arc::default(),
        })
    }

    /// The Raft node (for the peer service).
    pub fn raft(&self) -> &ControllerRaft {
        &self.raft
    }

    /// This replica's node id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Where the other replicas reach this one.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The replicated state as applied here.
    pub fn state(&self) -> &StateMachine {
        &self.state
    }

    /// The cluster id this replica applied (empty before the cluster's creation).
    pub fn cluster_id(&self) -> String {
        self.state
            .read(|s| s.cluster.as_ref().map(|c| c.cluster_id.clone()))
            .unwrap_or_default()
    }

    /// True if this replica believes it leads (without a quorum round; for housekeeping).
    pub fn believes_it_leads(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// The leader's address as this replica knows it (empty if none).
    pub fn leader_address(&self) -> String {
        let metrics = self.raft.metrics().borrow().clone();
        metrics
            .current_leader
            .and_then(|id| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.addr.clone())
            })
            .unwrap_or_default()
    }

    /// Confirms with a quorum that this replica still leads, and waits until its state has
    /// applied everything committed before now. Fails with [`Error::NotLeader`] naming the
    /// leader otherwise, or [`Error::Unavailable`] when no quorum answers.
    pub async fn confirm_leadership(&self) -> Result<(), Error> {
        self.await_leader(LEADER_WAIT).await;
        if !self.believes_it_leads() {
            return Err(Error::NotLeader(self.leader_address()));
        }
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(not_leader(&f)),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => Err(
                Error::Unavailable(format!("the controller group has no quorum: {q}")),
            ),
            Err(RaftError::Fatal(f)) => Err(Error::Unavailable(format!(
                "this controller replica stopped: {f}"
            ))),
        }
    }

    /// Waits (at most `within`) until this replica knows a leader: a request that arrives
    /// during an election is answered when it ends rather than refused.
    async fn await_leader(&self, within: Duration) {
        let mut metrics = self.raft.metrics();
        let _ = tokio::time::timeout(within, async {
            while metrics.borrow_and_update().current_leader.is_none() {
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// Proposes `command` and waits until it is committed and applied here.
    pub async fn propose(&self, command: Command) -> Result<CommandOutcome, Error> {
        self.raft
            .client_write(command)
            .await
            .map(|r| r.data)
            .map_err(write_error)
    }

    /// Creates the cluster if the group has none (leader only; see
    /// [`ControllerGroup::create_cluster_via_leader`]).
    pub async fn create_cluster(&self, cluster: Metadata) -> Result<(), Error> {
        cluster.validate()?;
        self.confirm_leadership().await?;
        if self.cluster().is_none() {
            self.propose(Command::CreateCluster(cluster)).await?;
        }
        Ok(())
    }

    /// Creates the cluster here if this replica leads, else through the leader's
    /// `CreateCluster`.
    pub async fn create_cluster_via_leader(&self, cluster: &Metadata) -> Result<(), Error> {
        if self.believes_it_leads() {
            return self.create_cluster(cluster.clone()).await;
        }
        let leader = self.leader_address();
        if leader.is_empty() {
            return Err(Error::NotLeader(String::new()));
        }
        let bytes = serde_json::to_vec(cluster)
            .map_err(|e| Error::Internal(format!("encoding the cluster: {e}")))?;
        let mut client = self.network.client(&leader).map_err(Error::Unavailable)?;
        let mut request = tonic::Request::new(v1::CreateClusterRequest {
            cluster: bytes.into(),
        });
        request.set_timeout(Duration::from_secs(5));
        client
            .create_cluster(request)
            .await
            .map(|_| ())
            .map_err(|s| ferrisdb_proto::status::from_status(&s))
    }

    /// The replicated cluster, once created.
    pub fn cluster(&self) -> Option<Metadata> {
        self.state.read(|s| s.cluster.clone())
    }

    /// The voting members as applied here.
    pub fn members(&self) -> BTreeMap<NodeId, String> {
        self.state.read(|s| {
            let m = s.membership.membership();
            m.voter_ids()
                .filter_map(|id| m.get_node(&id).map(|n| (id, n.addr.clone())))
                .collect()
        })
    }

    /// This replica as it sees itself (the `Identify` answer).
    pub fn identify(&self) -> v1::ControllerReplica {
        let metrics = self.raft.metrics().borrow().clone();
        let role = match metrics.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner | ServerState::Shutdown => "learner",
        };
        let initialized = metrics.membership_config.membership().nodes().count() > 0;
        v1::ControllerReplica {
            node_id: self.node_id,
            address: self.address.clone(),
            role: role.into(),
            term: metrics.current_term,
            last_applied_index: metrics.last_applied.map_or(0, |l| l.index),
            leader_id: metrics.current_leader.unwrap_or(0),
            leader_address: self.leader_address(),
            cluster_id: self.cluster_id(),
            initialized,
            members: self
                .members()
                .into_iter()
                .map(|(node_id, address)| v1::ControllerMember { node_id, address })
                .collect(),
        }
    }

    /// True if this replica votes in its group (as its log's membership says).
    pub fn is_voter(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == self.node_id)
    }

    /// Asks the replica at `address` who it is.
    pub async fn identify_peer(
        &self,
        address: &str,
        timeout: Duration,
    ) -> Result<v1::ControllerReplica, Error> {
        if address == self.address {
            return Ok(self.identify());
        }
        let mut client = self.network.client(address).map_err(Error::Unavailable)?;
        let mut request = tonic::Request::new(v1::IdentifyRequest {});
        request.set_timeout(timeout);
        client
            .identify(request)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| Error::Unavailable(format!("{address}: {}", s.message())))
    }

    /// Forms the group with `peers` or joins the group they belong to (see the module
    /// documentation); with `join_only`, never forms one: waits to join (through a peer, or
    /// `ferrisdb cluster controllers add`). Returns once this replica belongs to a group;
    /// retries until then.
    pub async fn form_or_join(&self, peers: Vec<String>, join_only: bool) {
        let mut peers = peers;
        if peers.is_empty() {
            peers.push(self.address.clone());
        }
        let mut logged_wait = false;
        loop {
            // A voter, not merely initialised: a replica whose join stopped halfway (added as
            // a learner, then the leader failed) asks again.
            if self.is_voter() {
                return;
            }
            match self.try_form_or_join(&peers, join_only).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) if !logged_wait => {
                    tracing::info!("waiting to form or join the controller group: {e}");
                    logged_wait = true;
                }
                Err(e) => tracing::debug!("forming or joining the controller group: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn try_form_or_join(&self, peers: &[String], join_only: bool) -> Result<bool, Error> {
        let timeout = Duration::from_millis(500);
        let mut answers = Vec::new();
        let mut missing = Vec::new();
        for peer in peers {
            match self.identify_peer(peer, timeout).await {
                Ok(a) => answers.push(a),
                Err(_) => missing.push(peer.clone()),
            }
        }
        if let Some(member) = answers
            .iter()
            .find(|a| a.initialized && a.node_id != self.node_id)
            .or_else(|| {
                answers
                    .iter()
                    .find(|a| a.node_id == self.node_id && a.initialized)
            })
        {
            // A group exists: ask its leader to add this replica.
            let leader = if member.leader_address.is_empty() {
                member.address.clone()
            } else {
                member.leader_address.clone()
            };
            let mut client = self.network.client(&leader).map_err(Error::Unavailable)?;
            let mut request = tonic::Request::new(v1::JoinRequest {
                node_id: self.node_id,
                address: self.address.clone(),
            });
            request.set_timeout(Duration::from_secs(10));
            client.join(request).await.map_err(|s| {
                Error::Unavailable(format!("joining via {leader}: {}", s.message()))
            })?;
            tracing::info!(via = %leader, "joined the controller group");
            return Ok(true);
        }
        if join_only {
            return Err(Error::Unavailable(format!(
                "waiting to be added to a group: run `ferrisdb cluster controllers add {}`, \
                 or name a current replica in --peers",
                self.address
            )));
        }
        if peers.first().map(String::as_str) != Some(self.address.as_str()) {
            return Err(Error::Unavailable(format!(
                "waiting for {} to form the group",
                peers.first().map_or("", String::as_str)
            )));
        }
        if !missing.is_empty() {
            return Err(Error::Unavailable(format!(
                "controller replicas not reachable yet: {}",
                missing.join(", ")
            )));
        }
        let members: BTreeMap<NodeId, BasicNode> = answers
            .iter()
            .map(|a| (a.node_id, BasicNode::new(a.address.clone())))
            .collect();
        if members.len() != peers.len() {
            return Err(Error::InvalidArgument(format!(
                "the peer list names {} addresses but {} distinct replicas answered",
                peers.len(),
                members.len()
            )));
        }
        match self.raft.initialize(members.clone()).await {
            Ok(()) => {
                tracing::info!(members = ?members, "formed the controller group");
                Ok(true)
            }
            Err(e) => Err(Error::Unavailable(format!("initialising the group: {e}"))),
        }
    }

    /// Adds replica `node_id` at `address` as a voter (leader only). A member at the same
    /// address with another id is replaced.
    pub async fn join(&self, node_id: NodeId, address: String) -> Result<(), Error> {
        super::membership::check_address(&address)?;
        self.confirm_leadership().await?;
        let members = self.members();
        if members.get(&node_id) == Some(&address) {
            return Ok(());
        }
        // Only a replica that is really there, under that id, and not of another cluster.
        let peer = self
            .identify_peer(&address, Duration::from_secs(1))
            .await
            .map_err(|e| Error::InvalidArgument(format!("no replica to add at {address}: {e}")))?;
        if peer.node_id != node_id {
            return Err(Error::InvalidArgument(format!(
                "the replica at {address} is node {}, not node {node_id}",
                peer.node_id
            )));
        }
        let ours = self.cluster_id();
        if !peer.cluster_id.is_empty() && peer.cluster_id != ours {
            return Err(Error::InvalidArgument(format!(
                "the replica at {address} belongs to cluster {}, not {ours}",
                peer.cluster_id
            )));
        }
        if let Some((other, _)) = members
            .iter()
            .find(|(id, a)| **a == address && **id != node_id)
        {
            tracing::warn!(old = other, new = node_id, %address, "a fresh controller replica replaces the one at its address");
        }
        tokio::time::timeout(
            Duration::from_secs(10),
            self.raft
                .add_learner(node_id, BasicNode::new(address.clone()), true),
        )
        .await
        .map_err(|_| {
            Error::Unavailable(format!(
                "the replica at {address} did not catch up within 10 s"
            ))
        })?
        .map_err(write_error)?;
        let voters: BTreeSet<NodeId> = members
            .iter()
            .filter(|(_, a)| **a != address)
            .map(|(id, _)| *id)
            .chain([node_id])
            .collect();
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(write_error)?;
        tracing::info!(node_id, %address, "controller replica added to the group");
        Ok(())
    }

    /// Removes the replica at `address` (leader only). Refused if the replicas left that
    /// answer now would not make a quorum of the new group.
    pub async fn leave(&self, address: &str) -> Result<(), Error> {
        self.confirm_leadership().await?;
        let members = self.members();
        let Some((&gone, _)) = members.iter().find(|(_, a)| *a == address) else {
            return Err(Error::InvalidArgument(format!(
                "{address} is not a controller replica of this group (members: {})",
                members.values().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        let remaining: BTreeMap<NodeId, String> =
            members.into_iter().filter(|(id, _)| *id != gone).collect();
        if remaining.is_empty() {
            return Err(Error::InvalidArgument(
                "cannot remove the last controller replica".into(),
            ));
        }
        let mut reachable = 0;
        for addr in remaining.values() {
            if self
                .identify_peer(addr, Duration::from_millis(500))
                .await
                .is_ok()
            {
                reachable += 1;
            }
        }
        let quorum = remaining.len() / 2 + 1;
        if reachable < quorum {
            return Err(Error::InvalidArgument(format!(
                "removing {address} would leave {} replicas of which only {reachable} answer: \
                 below the quorum of {quorum}",
                remaining.len()
            )));
        }
        self.raft
            .change_membership(remaining.keys().copied().collect::<BTreeSet<_>>(), false)
            .await
            .map_err(write_error)?;
        tracing::info!(node_id = gone, %address, "controller replica removed from the group");
        Ok(())
    }

    /// Every member's status as it reports it (`unreachable` when it does not answer), at
    /// most 500 ms old: workers fetch the cluster state every few heartbeats, and a
    /// dead replica would otherwise cost each fetch the Identify timeout.
    pub async fn replica_statuses(&self) -> Vec<v1::ControllerReplicaStatus> {
        let members = self.members();
        if let Some((at, asked, statuses)) = self.statuses.lock().as_ref()
            && at.elapsed() < STATUS_CACHE
            && *asked == members
        {
            return statuses.clone();
        }
        let fresh = self.ask_replicas(&members).await;
        *self.statuses.lock() = Some((tokio::time::Instant::now(), members, fresh.clone()));
        fresh
    }

    async fn ask_replicas(
        &self,
        members: &BTreeMap<NodeId, String>,
    ) -> Vec<v1::ControllerReplicaStatus> {
        let asks = members.iter().map(|(id, address)| async move {
            match self
                .identify_peer(address, Duration::from_millis(300))
                .await
            {
                Ok(r) => v1::ControllerReplicaStatus {
                    node_id: *id,
                    address: address.clone(),
                    role: r.role,
                    term: r.term,
                    last_applied_index: r.last_applied_index,
                },
                Err(_) => v1::ControllerReplicaStatus {
                    node_id: *id,
                    address: address.clone(),
                    role: "unreachable".into(),
                    term: 0,
                    last_applied_index: 0,
                },
            }
        });
        futures_util::future::join_all(asks).await
    }

    /// Completes once this replica's Raft node has stopped on its own (e.g. its journal
    /// failed to write or fsync: [the journal](super::raft::journal) refuses writes from then
    /// on), with the reason; never while it runs.
    pub async fn stopped(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "the Raft node stopped".to_string();
            }
        }
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("stopping the Raft node: {e}");
        }
    }
}

fn not_leader(f: &ForwardToLeader<NodeId, BasicNode>) -> Error {
    Error::NotLeader(
        f.leader_node
            .as_ref()
            .map(|n| n.addr.clone())
            .unwrap_or_default(),
    )
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(&f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            Error::Unavailable(format!("changing the controller group: {c}"))
        }
        RaftError::Fatal(f) => Error::Unavailable(format!("this controller replica stopped: {f}")),
    }
}
