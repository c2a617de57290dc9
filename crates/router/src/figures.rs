//! The estimate figures routing uses, per design and profile: from memory, else from the
//! [`Catalog`](crate::Catalog) (which may slice the model, so only where blocking is allowed).
//! Profiles are fixed for the router's life and designs are content-addressed, so an entry
//! never goes stale.

use std::collections::HashMap;

use fabrouter_scheduler as sched;

use crate::Network;
use crate::durability::lock_ignoring_poison;
use crate::ports::{DesignFacts, DesignKind, Estimated};

/// Most designs whose estimate figures are kept in memory; the store's cache backs them.
const MAX_CACHED_FIGURES: usize = 4096;

/// Per design sha256, per profile: the figures, or `None` when the model does not slice on
/// that profile.
pub(crate) type FigureCache = HashMap<String, HashMap<String, Option<sched::EstimateFigures>>>;

impl Network {
    /// Slice-estimates of a design for each of `profiles` the router can estimate on.
    /// Profiles without a definition, or on which the model cannot be estimated, are left out:
    /// routing then uses the rough figure.
    pub(crate) fn figures(
        &self,
        design: &DesignFacts,
        profiles: impl IntoIterator<Item = String>,
    ) -> HashMap<String, sched::EstimateFigures> {
        self.figures_if(design, profiles, true).unwrap_or_default()
    }

    /// [`Network::figures`]; with `may_compute` false, `None` when some figure is not in
    /// memory yet (getting it may slice the model: the caller moves to a blocking thread).
    pub(crate) fn figures_if(
        &self,
        design: &DesignFacts,
        profiles: impl IntoIterator<Item = String>,
        may_compute: bool,
    ) -> Option<HashMap<String, sched::EstimateFigures>> {
        if let DesignKind::Gcode { figures, .. } = design.kind {
            // Pre-sliced G-code takes as long on any profile: its slicer's figures stand.
            return Some(profiles.into_iter().map(|p| (p, figures)).collect());
        }
        let mut out = HashMap::new();
        for name in profiles {
            if out.contains_key(&name) {
                continue;
            }
            let cached = lock_ignoring_poison(&self.figures)
                .get(&design.sha256)
                .and_then(|by_profile| by_profile.get(&name).copied());
            let figures = match cached {
                Some(f) => f,
                None => {
                    if !self.catalog.knows_profile(&name) {
                        continue;
                    }
                    if !may_compute {
                        return None;
                    }
                    let f = match self.catalog.estimate(design, &name) {
                        Estimated::Figures(f) => Some(f),
                        Estimated::NotOnProfile => None,
                        Estimated::UnknownProfile | Estimated::NotNow => continue,
                    };
                    let mut cache = lock_ignoring_poison(&self.figures);
                    if cache.len() >= MAX_CACHED_FIGURES && !cache.contains_key(&design.sha256) {
                        cache.clear();
                    }
                    cache
                        .entry(design.sha256.clone())
                        .or_default()
                        .insert(name.clone(), f);
                    f
                }
            };
            if let Some(f) = figures {
                out.insert(name, f);
            }
        }
        Some(out)
    }

    /// Every profile some registered printer prints with.
    pub(crate) fn fleet_profiles(&self) -> Vec<String> {
        let profiles = self.lock().profiles.clone();
        profiles.iter().cloned().collect()
    }
}
