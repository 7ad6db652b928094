//! The dependency graph between transactions and its cycles.
//!
//! Nodes are transaction numbers; an edge carries a set of dependency kinds (write-write,
//! write-read, read-write). Strongly connected components are found with an iterative Tarjan
//! (no recursion, so long dependency chains cannot overflow the stack); each component with
//! more than one transaction holds a cycle, which [`classify`](Graph::classify) names after the weakest edges
//! it needs, as Adya and Elle do: only ww → G0; ww and wr → G1c; exactly one rw → G-single;
//! otherwise G2.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A write-write dependency: the source's append precedes the target's in a key's order.
pub const WW: u8 = 1;
/// A write-read dependency: the target read the source's append.
pub const WR: u8 = 2;
/// A read-write (anti-)dependency: the source read a state before the target's append.
pub const RW: u8 = 4;

/// The name of a cycle, after the weakest edges it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CycleKind {
    /// Write-write edges only (dirty write).
    G0,
    /// Write-write and write-read edges (circular information flow).
    G1c,
    /// Exactly one read-write edge (read skew, "single anti-dependency").
    GSingle,
    /// Two or more read-write edges (write skew and friends).
    G2,
}

impl std::fmt::Display for CycleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CycleKind::G0 => "G0",
            CycleKind::G1c => "G1c",
            CycleKind::GSingle => "G-single",
            CycleKind::G2 => "G2",
        })
    }
}

/// Directed graph over transaction numbers with edge-kind bit sets.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    edges: BTreeMap<usize, BTreeMap<usize, u8>>,
}

impl Graph {
    /// Adds `kind` to the edge `from → to`; self-edges are ignored.
    pub fn add(&mut self, from: usize, to: usize, kind: u8) {
        if from != to {
            *self.edges.entry(from).or_default().entry(to).or_default() |= kind;
        }
    }

    /// The kinds on `from → to` (0: no edge).
    pub fn kinds(&self, from: usize, to: usize) -> u8 {
        self.edges
            .get(&from)
            .and_then(|m| m.get(&to))
            .copied()
            .unwrap_or(0)
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.edges.values().map(BTreeMap::len).sum()
    }

    fn successors<'a>(
        &'a self,
        node: usize,
        mask: u8,
        within: &'a BTreeSet<usize>,
    ) -> impl Iterator<Item = usize> + 'a {
        self.edges
            .get(&node)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |(to, kinds)| *kinds & mask != 0 && within.contains(to))
            .map(|(to, _)| *to)
    }

    fn nodes(&self) -> BTreeSet<usize> {
        let mut nodes: BTreeSet<usize> = self.edges.keys().copied().collect();
        for m in self.edges.values() {
            nodes.extend(m.keys().copied());
        }
        nodes
    }

    /// Strongly connected components with more than one node, over edges of `mask` between
    /// nodes of `within` (iterative Tarjan).
    pub fn cyclic_components(&self, mask: u8, within: &BTreeSet<usize>) -> Vec<BTreeSet<usize>> {
        let mut index: BTreeMap<usize, usize> = BTreeMap::new();
        let mut low: BTreeMap<usize, usize> = BTreeMap::new();
        let mut on_stack: BTreeSet<usize> = BTreeSet::new();
        let mut stack: Vec<usize> = Vec::new();
        let mut out = Vec::new();
        let mut next = 0;
        for &root in within {
            if index.contains_key(&root) {
                continue;
            }
            // Each frame: a node and its successors not yet explored.
            let mut frames: Vec<(usize, Vec<usize>)> = Vec::new();
            index.insert(root, next);
            low.insert(root, next);
            next += 1;
            stack.push(root);
            on_stack.insert(root);
            frames.push((root, self.successors(root, mask, within).collect()));
            while let Some((node, pending)) = frames.last_mut() {
                let node = *node;
                if let Some(succ) = pending.pop() {
                    if let Some(&i) = index.get(&succ) {
                        if on_stack.contains(&succ) {
                            let l = low[&node].min(i);
                            low.insert(node, l);
                        }
                    } else {
                        index.insert(succ, next);
                        low.insert(succ, next);
                        next += 1;
                        stack.push(succ);
                        on_stack.insert(succ);
                        frames.push((succ, self.successors(succ, mask, within).collect()));
                    }
                    continue;
                }
                frames.pop();
                if let Some((parent, _)) = frames.last() {
                    let l = low[parent].min(low[&node]);
                    low.insert(*parent, l);
                }
                if low[&node] == index[&node] {
                    let mut component = BTreeSet::new();
                    while let Some(n) = stack.pop() {
                        on_stack.remove(&n);
                        component.insert(n);
                        if n == node {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        out.push(component);
                    }
                }
            }
        }
        out
    }

    /// Every cyclic component of the whole graph.
    pub fn all_cyclic_components(&self) -> Vec<BTreeSet<usize>> {
        self.cyclic_components(WW | WR | RW, &self.nodes())
    }

    /// Shortest path `from → … → to` over edges of `mask` inside `within` (BFS), as nodes.
    fn path(
        &self,
        from: usize,
        to: usize,
        mask: u8,
        within: &BTreeSet<usize>,
    ) -> Option<Vec<usize>> {
        let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        let mut seen = BTreeSet::from([from]);
        while let Some(n) = queue.pop_front() {
            if n == to {
                let mut path = vec![to];
                let mut cur = to;
                while cur != from {
                    cur = parent[&cur];
                    path.push(cur);
                }
                path.reverse();
                return Some(path);
            }
            for s in self.successors(n, mask, within) {
                if seen.insert(s) {
                    parent.insert(s, n);
                    queue.push_back(s);
                }
            }
        }
        None
    }

    /// A cycle over edges of `mask` inside `within`, as nodes (first not repeated).
    fn cycle(&self, mask: u8, within: &BTreeSet<usize>) -> Option<Vec<usize>> {
        let component = self.cyclic_components(mask, within).into_iter().next()?;
        let start = *component.iter().next()?;
        // Leave the component through one edge and come back by the shortest path.
        let first = self.successors(start, mask, &component).next()?;
        let mut cycle = vec![start];
        cycle.extend(self.path(first, start, mask, &component)?);
        cycle.pop();
        Some(cycle)
    }

    /// Names the cycle of a cyclic `component` and gives one cycle of that kind.
    pub fn classify(&self, component: &BTreeSet<usize>) -> Option<(CycleKind, Vec<usize>)> {
        if let Some(c) = self.cycle(WW, component) {
            return Some((CycleKind::G0, c));
        }
        if let Some(c) = self.cycle(WW | WR, component) {
            return Some((CycleKind::G1c, c));
        }
        for &a in component {
            for b in self.successors(a, RW, component) {
                if let Some(back) = self.path(b, a, WW | WR, component) {
                    let mut cycle = vec![a];
                    cycle.extend(back);
                    cycle.pop();
                    return Some((CycleKind::GSingle, cycle));
                }
            }
        }
        self.cycle(WW | WR | RW, component)
            .map(|c| (CycleKind::G2, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dag_has_no_cyclic_component() {
        let mut g = Graph::default();
        g.add(0, 1, WW);
        g.add(1, 2, WR);
        g.add(0, 2, RW);
        g.add(3, 3, WW);
        assert!(g.all_cyclic_components().is_empty());
    }

    /// Edges `(from, to, kinds)`.
    type Edges = &'static [(usize, usize, u8)];

    #[test]
    fn classifies_by_the_weakest_edges_needed() {
        let cases: [(Edges, CycleKind); 5] = [
            (&[(0, 1, WW), (1, 0, WW)], CycleKind::G0),
            (&[(0, 1, WW), (1, 2, WR), (2, 0, WW)], CycleKind::G1c),
            (&[(0, 1, RW), (1, 0, WR)], CycleKind::GSingle),
            (&[(0, 1, RW), (1, 0, RW)], CycleKind::G2),
            // A G0 cycle inside a component that also has rw edges is still G0.
            (
                &[(0, 1, WW | RW), (1, 0, WW), (1, 2, RW), (2, 0, RW)],
                CycleKind::G0,
            ),
        ];
        for (edges, want) in cases {
            let mut g = Graph::default();
            for &(a, b, k) in edges {
                g.add(a, b, k);
            }
            let components = g.all_cyclic_components();
            assert_eq!(components.len(), 1, "{edges:?}");
            let (kind, cycle) = g.classify(&components[0]).unwrap();
            assert_eq!(kind, want, "{edges:?}");
            // The cycle is real: consecutive nodes (and last → first) are joined by edges.
            for i in 0..cycle.len() {
                let (a, b) = (cycle[i], cycle[(i + 1) % cycle.len()]);
                assert_ne!(g.kinds(a, b), 0, "{cycle:?} in {edges:?}");
            }
        }
    }

    #[test]
    fn long_chains_do_not_overflow_and_a_closing_edge_makes_one_component() {
        let mut g = Graph::default();
        for i in 0..200_000 {
            g.add(i, i + 1, WW);
        }
        assert!(g.all_cyclic_components().is_empty());
        g.add(200_000, 0, RW);
        let components = g.all_cyclic_components();
        assert_eq!(components.len(), 1);
        assert_eq!(components[0].len(), 200_001);
    }
}
