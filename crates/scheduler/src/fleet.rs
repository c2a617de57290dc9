//! The scheduler's snapshot of the printer registry (the Kubernetes scheduler's "node info
//! cache"): every printer as declared, plus a compact copy of what the filters and scores read,
//! laid out contiguously with names interned to numbers.
//!
//! Why: a decision over 10,000 printers must take well under 1 ms, and walking 10,000 `Printer`
//! records (strings and vectors behind pointers) is dominated by cache misses. The hot data is
//! split by how often it is read: a 16-byte `Gate` (state, technology, latitude) that every
//! printer is checked against, a 64-byte `Slot` read by the printers that pass the gate, and
//! a `Cost` read only for capable printers; names are interned so material and profile
//! matching are integer comparisons. For 10,000 printers that is 160 KB of gates, which is
//! all a printer of the wrong technology or state costs, plus 640 KB of slots and 480 KB of
//! costs touched only as far as printers get.
//!
//! The router keeps one `Fleet` next to its registry and updates it as nodes declare printers
//! ([`Fleet::upsert`]), change state ([`Fleet::set_state`]) or queue work
//! ([`Fleet::set_queue`]).

use std::collections::HashMap;
use std::hash::Hasher;

use fnv::{FnvHashMap, FnvHasher};

use crate::error::SchedulerError;
use crate::geo;
use crate::model::{Printer, PrinterState, Technology};

/// A run of entries in one of the fleet's arenas.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// The first, cheapest checks: read for every printer on every decision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gate {
    pub lat_deg: f64,
    pub state: PrinterState,
    pub technology: Technology,
}

/// The rest of what the filters read, for printers past the gate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub lon_deg: f64,
    pub cos_lat: f64,
    pub build_volume_mm: [f64; 3],
    materials: Span,
    nozzles: Span,
    profiles: Span,
}

impl Slot {
    fn arena_entries(&self) -> usize {
        (self.materials.len + self.nozzles.len + self.profiles.len) as usize
    }
}

/// What scoring reads, for capable printers only.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cost {
    pub per_hour: f64,
    pub per_gram: f64,
    pub setup_fee: f64,
    pub queued_work_s: f64,
    /// Hash of the printer id, combined with the job key for tie-breaks.
    pub id_hash: u64,
    pub active_jobs: u32,
}

/// Names mapped to dense numbers, so that matching is an integer comparison.
#[derive(Debug, Clone, Default)]
struct Interner {
    ids: FnvHashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn intern(&mut self, key: String) -> u32 {
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(key.clone());
        self.ids.insert(key, id);
        id
    }

    fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(String::as_str)
    }

    fn get(&self, key: &str) -> Option<u32> {
        self.ids.get(key).copied()
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// The key a material kind or colour is matched by: trimmed and lower-cased (Unicode), so
/// "PLA", " pla" and "Pla" are one material.
pub(crate) fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Rebuild the arenas once this many entries are garbage and garbage outweighs live data.
const COMPACT_MIN_GARBAGE: usize = 4096;

/// The printer registry as the scheduler sees it. Order is registration order (removal keeps
/// the order of the rest); it decides the order of rejections and, only after the score and
/// the per-job tie hash, which printer wins. Interned names (materials, colours, profiles) are
/// kept for the fleet's lifetime: bounded by the distinct names ever declared.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    printers: Vec<Printer>,
    gates: Vec<Gate>,
    slots: Vec<Slot>,
    costs: Vec<Cost>,
    /// Location on the unit sphere ([`geo::unit_vector`]): distance bounds without
    /// trigonometry for `Scheduler::assign`. Kept apart from `Slot` so the filters' records
    /// keep their size.
    units: Vec<[f64; 3]>,
    by_id: HashMap<String, usize>,
    names: Interner,
    profile_names: Interner,
    /// (kind, colour) name ids.
    materials: Vec<[u32; 2]>,
    nozzles: Vec<f64>,
    profiles: Vec<u32>,
    garbage: usize,
}

impl Fleet {
    /// Validates ([`Printer::validate`]) and indexes the printers; ids must be unique.
    pub fn new(printers: impl IntoIterator<Item = Printer>) -> Result<Self, SchedulerError> {
        let mut fleet = Fleet::default();
        for p in printers {
            if fleet.by_id.contains_key(&p.id) {
                return Err(SchedulerError::DuplicatePrinter(p.id));
            }
            fleet.upsert(p)?;
        }
        Ok(fleet)
    }

    pub fn len(&self) -> usize {
        self.printers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.printers.is_empty()
    }

    /// All printers, in fleet order.
    pub fn printers(&self) -> &[Printer] {
        &self.printers
    }

    pub fn get(&self, id: &str) -> Option<&Printer> {
        self.by_id.get(id).map(|&i| &self.printers[i])
    }

    /// Adds a printer or replaces the one with the same id (a node re-declaring it).
    pub fn upsert(&mut self, printer: Printer) -> Result<(), SchedulerError> {
        printer.validate()?;
        let (gate, slot, cost) = self.records_for(&printer);
        match self.by_id.get(&printer.id) {
            Some(&i) => {
                self.garbage += self.slots[i].arena_entries();
                self.gates[i] = gate;
                self.slots[i] = slot;
                self.costs[i] = cost;
                self.units[i] = geo::unit_vector(printer.location);
                self.printers[i] = printer;
                self.maybe_compact();
            }
            None => {
                self.by_id.insert(printer.id.clone(), self.printers.len());
                self.gates.push(gate);
                self.slots.push(slot);
                self.costs.push(cost);
                self.units.push(geo::unit_vector(printer.location));
                self.printers.push(printer);
            }
        }
        Ok(())
    }

    /// Removes a printer, keeping the order of the others.
    pub fn remove(&mut self, id: &str) -> Option<Printer> {
        let i = self.by_id.remove(id)?;
        self.garbage += self.slots.remove(i).arena_entries();
        self.gates.remove(i);
        self.costs.remove(i);
        self.units.remove(i);
        let printer = self.printers.remove(i);
        for p in &self.printers[i..] {
            if let Some(at) = self.by_id.get_mut(&p.id) {
                *at -= 1;
            }
        }
        self.maybe_compact();
        Some(printer)
    }

    /// Records a printer's new state (a node's status report).
    pub fn set_state(&mut self, id: &str, state: PrinterState) -> Result<(), SchedulerError> {
        let i = self.index(id)?;
        self.printers[i].state = state;
        self.gates[i].state = state;
        Ok(())
    }

    /// Records the work queued or printing on a printer (after a submit, a finished job...).
    pub fn set_queue(
        &mut self,
        id: &str,
        queued_work_s: f64,
        active_jobs: u32,
    ) -> Result<(), SchedulerError> {
        if !(queued_work_s.is_finite() && queued_work_s >= 0.0) {
            return Err(SchedulerError::Printer {
                printer_id: id.to_string(),
                problem: "queued work must be finite and not negative",
            });
        }
        let i = self.index(id)?;
        self.printers[i].queued_work_s = queued_work_s;
        self.printers[i].active_jobs = active_jobs;
        self.costs[i].queued_work_s = queued_work_s;
        self.costs[i].active_jobs = active_jobs;
        Ok(())
    }

    fn index(&self, id: &str) -> Result<usize, SchedulerError> {
        self.by_id
            .get(id)
            .copied()
            .ok_or_else(|| SchedulerError::UnknownPrinter(id.to_string()))
    }

    pub(crate) fn gates(&self) -> &[Gate] {
        &self.gates
    }

    pub(crate) fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub(crate) fn costs(&self) -> &[Cost] {
        &self.costs
    }

    pub(crate) fn units(&self) -> &[[f64; 3]] {
        &self.units
    }

    pub(crate) fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub(crate) fn material_ids(&self, slot: &Slot) -> &[[u32; 2]] {
        &self.materials[slot.materials.range()]
    }

    pub(crate) fn nozzles_of(&self, slot: &Slot) -> &[f64] {
        &self.nozzles[slot.nozzles.range()]
    }

    pub(crate) fn profile_ids(&self, slot: &Slot) -> &[u32] {
        &self.profiles[slot.profiles.range()]
    }

    /// Id of a material kind or colour, if any printer has ever declared it.
    pub(crate) fn name_id(&self, name: &str) -> Option<u32> {
        self.names.get(&name_key(name))
    }

    /// Number of distinct profile names (ids are `0..profile_count()`).
    pub(crate) fn profile_count(&self) -> usize {
        self.profile_names.len()
    }

    pub(crate) fn profile_name(&self, id: u32) -> Option<&str> {
        self.profile_names.name(id)
    }

    fn records_for(&mut self, p: &Printer) -> (Gate, Slot, Cost) {
        let start = self.materials.len() as u32;
        for m in &p.materials {
            let kind = self.names.intern(name_key(&m.kind));
            let colour = self.names.intern(name_key(&m.colour));
            self.materials.push([kind, colour]);
        }
        let materials = Span {
            start,
            len: p.materials.len() as u32,
        };
        let start = self.nozzles.len() as u32;
        self.nozzles.extend_from_slice(&p.nozzle_diameters_mm);
        let nozzles = Span {
            start,
            len: p.nozzle_diameters_mm.len() as u32,
        };
        let start = self.profiles.len() as u32;
        for name in &p.profiles {
            let id = self.profile_names.intern(name.clone());
            self.profiles.push(id);
        }
        let profiles = Span {
            start,
            len: p.profiles.len() as u32,
        };
        let mut h = FnvHasher::default();
        h.write(p.id.as_bytes());
        let gate = Gate {
            lat_deg: p.location.lat_deg(),
            state: p.state,
            technology: p.technology,
        };
        let slot = Slot {
            lon_deg: p.location.lon_deg(),
            cos_lat: p.location.lat_deg().to_radians().cos(),
            build_volume_mm: p.build_volume_mm,
            materials,
            nozzles,
            profiles,
        };
        let cost = Cost {
            per_hour: p.price.per_hour,
            per_gram: p.price.per_gram,
            setup_fee: p.price.setup_fee,
            queued_work_s: p.queued_work_s,
            id_hash: h.finish(),
            active_jobs: p.active_jobs,
        };
        (gate, slot, cost)
    }

    /// Rebuilds the arenas when replaced/removed entries outweigh live ones.
    fn maybe_compact(&mut self) {
        let live = self.materials.len() + self.nozzles.len() + self.profiles.len() - self.garbage;
        if self.garbage < COMPACT_MIN_GARBAGE || self.garbage < live {
            return;
        }
        self.materials.clear();
        self.nozzles.clear();
        self.profiles.clear();
        self.garbage = 0;
        let printers = std::mem::take(&mut self.printers);
        for (i, p) in printers.iter().enumerate() {
            // Only the arena spans move; gate and cost are rebuilt identically.
            (self.gates[i], self.slots[i], self.costs[i]) = self.records_for(p);
        }
        self.printers = printers;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::printer;
    use crate::model::Material;

    #[test]
    fn hot_records_stay_small() {
        // The sizes the module doc promises: they decide what stays in cache.
        assert_eq!(std::mem::size_of::<Gate>(), 16);
        assert_eq!(std::mem::size_of::<Slot>(), 64);
        assert_eq!(std::mem::size_of::<Cost>(), 48);
    }

    #[test]
    fn rejects_duplicates_and_invalid_printers() {
        let a = printer("a", 47.0, 8.0);
        assert_eq!(
            Fleet::new([a.clone(), a.clone()]).err(),
            Some(SchedulerError::DuplicatePrinter("a".into()))
        );
        let mut bad = a;
        bad.build_volume_mm[1] = f64::NAN;
        assert!(matches!(
            Fleet::new([bad]),
            Err(SchedulerError::Printer { .. })
        ));
    }

    #[test]
    fn upsert_remove_and_updates_keep_slots_in_step() {
        let mut f = Fleet::new(["a", "b", "c"].map(|id| printer(id, 47.0, 8.0))).unwrap();
        let mut b = printer("b", 48.0, 9.0);
        b.materials = vec![Material {
            kind: " PETG ".into(),
            colour: "Orange".into(),
        }];
        f.upsert(b).unwrap();
        assert_eq!(f.len(), 3);
        let slot = f.slots()[1];
        assert_eq!(f.gates()[1].lat_deg, 48.0);
        assert_eq!(slot.lon_deg, 9.0);
        let petg = f.name_id("petg").unwrap();
        let orange = f.name_id("ORANGE").unwrap();
        assert_eq!(f.material_ids(&slot), [[petg, orange]]);

        assert_eq!(f.remove("a").map(|p| p.id), Some("a".to_string()));
        assert_eq!(f.index_of("b"), Some(0));
        assert_eq!(f.index_of("c"), Some(1));
        assert_eq!(f.get("c").map(|p| p.id.as_str()), Some("c"));

        f.set_state("c", PrinterState::Maintenance).unwrap();
        f.set_queue("c", 900.0, 2).unwrap();
        assert_eq!(f.gates()[1].state, PrinterState::Maintenance);
        assert_eq!(f.costs()[1].queued_work_s, 900.0);
        assert_eq!(f.get("c").unwrap().active_jobs, 2);
        assert_eq!(f.units().len(), 2);
        assert_eq!(f.units()[0], geo::unit_vector(f.printers()[0].location));
        assert!(f.set_state("zz", PrinterState::Idle).is_err());
        assert!(f.set_queue("c", f64::NAN, 0).is_err());
    }

    #[test]
    fn compaction_keeps_every_printer_readable() {
        let mut f = Fleet::new((0..10).map(|i| printer(&format!("p{i}"), 47.0, 8.0))).unwrap();
        // Re-declare printers until the arenas are compacted at least once.
        for round in 0..COMPACT_MIN_GARBAGE {
            let mut p = printer(&format!("p{}", round % 10), 47.0, 8.0);
            p.nozzle_diameters_mm = vec![0.4, 0.6];
            f.upsert(p).unwrap();
        }
        assert!(
            f.nozzles.len() < 2 * COMPACT_MIN_GARBAGE,
            "{}",
            f.nozzles.len()
        );
        for slot in f.slots() {
            assert_eq!(f.nozzles_of(slot), [0.4, 0.6]);
            assert_eq!(f.profile_ids(slot).len(), 1);
        }
    }
}
