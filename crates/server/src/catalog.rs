//! What the router core needs to know of designs, read from the store and the stored reports
//! ([`fabrouter_router::Catalog`]): a design's extent and printability, a G-code file's own
//! figures, and slice estimates per profile (computed by `estimates`, cached in the store).

use std::sync::Arc;

use fabrouter_api::v1 as pb;
use fabrouter_router::{Catalog, DesignFacts, DesignKind, Estimated};
use fabrouter_scheduler as sched;
use fabrouter_store::DesignRecord;
use prost::Message;

use crate::State;
use crate::estimates::{Profiles, estimate_for_routing};

/// The store's designs and the router's profiles, as the core's catalog.
pub struct StoreCatalog {
    pub state: Arc<State>,
    pub profiles: Arc<Profiles>,
}

/// Time and mass of pre-sliced G-code: the slicer's own figures, else the feed-rate time and
/// the filament pushed (1.75 mm PLA at 1.24 g/cm³) as a lower bound.
fn gcode_figures(g: &pb::GcodeReport) -> sched::EstimateFigures {
    let area_mm2 = std::f64::consts::PI * 0.875 * 0.875;
    sched::EstimateFigures {
        print_time_s: if g.slicer_time_s > 0.0 {
            g.slicer_time_s
        } else {
            g.feedrate_time_s
        },
        filament_g: if g.slicer_filament_g > 0.0 {
            g.slicer_filament_g
        } else {
            g.extruded_mm * area_mm2 * 1.24e-3
        },
    }
}

/// What routing needs of a stored design, from its record and report.
pub fn facts(rec: &DesignRecord) -> DesignFacts {
    let kind = if crate::designs::is_gcode(rec) {
        let g = pb::GcodeReport::decode(rec.report.as_slice()).unwrap_or_default();
        let max = g.print_max_mm.unwrap_or_default();
        DesignKind::Gcode {
            print_max_mm: [max.x, max.y, max.z],
            figures: gcode_figures(&g),
            filament_type: g.filament_type,
        }
    } else {
        let r = pb::MeshReport::decode(rec.report.as_slice()).unwrap_or_default();
        let e = r.extent_mm.unwrap_or_default();
        let not_printable = (r.verdict == pb::Verdict::NotPrintable as i32).then(|| {
            r.findings
                .iter()
                .find(|f| f.severity == pb::Severity::Error as i32)
                .map_or_else(|| "see its mesh report".to_string(), |f| f.message.clone())
        });
        DesignKind::Mesh {
            extent_mm: [e.x, e.y, e.z],
            volume_mm3: r.volume_mm3,
            not_printable,
        }
    };
    DesignFacts {
        id: rec.id.clone(),
        owner: rec.owner.clone(),
        sha256: rec.sha256.clone(),
        kind,
    }
}

impl Catalog for StoreCatalog {
    fn design(&self, id: &str) -> fabrouter_router::Result<Option<DesignFacts>> {
        Ok(self.state.store.get_design(id)?.as_ref().map(facts))
    }

    fn knows_profile(&self, profile: &str) -> bool {
        self.profiles.get(profile).is_some()
    }

    fn estimate(&self, design: &DesignFacts, profile: &str) -> Estimated {
        let Some(profile) = self.profiles.get(profile) else {
            return Estimated::UnknownProfile;
        };
        let rec = match self.state.store.get_design(&design.id) {
            Ok(Some(rec)) => rec,
            Ok(None) => return Estimated::NotNow,
            Err(e) => {
                tracing::warn!(design = %design.id, error = %e, "estimate postponed");
                return Estimated::NotNow;
            }
        };
        match estimate_for_routing(&self.state, &rec, &profile) {
            Ok((e, _, _)) => Estimated::Figures(sched::EstimateFigures {
                print_time_s: e.print_time_s,
                filament_g: e.filament_g,
            }),
            Err(e) if e.is_permanent() => Estimated::NotOnProfile,
            Err(e) => {
                tracing::warn!(design = %design.id, error = %e, "estimate postponed");
                Estimated::NotNow
            }
        }
    }
}
