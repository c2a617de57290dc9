//! Where printers and customers are: validated points, great-circle distance, and the coarse
//! (~1 km) form in which a customer location may be stored.
//!
//! Privacy rule from the issue: the exact customer location is used for one routing decision
//! and then dropped; only [`CoarseLocation`] (a 6-character geohash) may be persisted.

use serde::{Deserialize, Serialize};

use crate::error::GeoError;

/// Mean Earth radius (IUGG R1), km. Haversine on a sphere is within ~0.5 % of the ellipsoid,
/// far below what matters for "which makerspace is nearer".
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Kilometres per degree of latitude on that sphere; used for a trig-free distance pre-check.
const KM_PER_DEG_LAT: f64 = EARTH_RADIUS_KM * std::f64::consts::PI / 180.0;

/// Characters of geohash kept for a customer location: a 6-character cell is about
/// 1.2 km x 0.6 km at the equator (narrower east-west towards the poles).
pub const COARSE_GEOHASH_LEN: usize = 6;

/// A WGS84 latitude/longitude in degrees, validated on construction (and on deserialisation):
/// latitude in [-90, 90], longitude in [-180, 180], both finite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawGeoPoint")]
pub struct GeoPoint {
    lat_deg: f64,
    lon_deg: f64,
}

#[derive(Deserialize)]
struct RawGeoPoint {
    lat_deg: f64,
    lon_deg: f64,
}

impl TryFrom<RawGeoPoint> for GeoPoint {
    type Error = GeoError;
    fn try_from(raw: RawGeoPoint) -> Result<Self, GeoError> {
        GeoPoint::new(raw.lat_deg, raw.lon_deg)
    }
}

impl GeoPoint {
    /// Validates the ranges; the only way to build a point.
    pub fn new(lat_deg: f64, lon_deg: f64) -> Result<Self, GeoError> {
        if !(lat_deg.is_finite() && (-90.0..=90.0).contains(&lat_deg)) {
            return Err(GeoError::Latitude(lat_deg));
        }
        if !(lon_deg.is_finite() && (-180.0..=180.0).contains(&lon_deg)) {
            return Err(GeoError::Longitude(lon_deg));
        }
        Ok(Self { lat_deg, lon_deg })
    }

    pub fn lat_deg(&self) -> f64 {
        self.lat_deg
    }

    pub fn lon_deg(&self) -> f64 {
        self.lon_deg
    }

    /// Great-circle (haversine) distance in km.
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        Origin::new(*self).distance_km(other)
    }
}

/// The point on the unit sphere (x towards lon 0 on the equator, z towards the north pole).
/// Precomputed per printer by the fleet: the chord between two of these bounds the
/// great-circle distance without trigonometry (see [`Origin::distance_bounds_km`]).
pub(crate) fn unit_vector(point: GeoPoint) -> [f64; 3] {
    let (sin_lat, cos_lat) = point.lat_deg.to_radians().sin_cos();
    let (sin_lon, cos_lon) = point.lon_deg.to_radians().sin_cos();
    [cos_lat * cos_lon, cos_lat * sin_lon, sin_lat]
}

/// Slack of [`distance_lower_km`] and [`distance_upper_km`] for rounding, relative and in km. The chord and the
/// haversine formula each carry a few 1e-16 of relative error (well below 1e-12 km for any
/// distance here); the margins are kept orders of magnitude wider because the bounds must
/// never cut off the haversine figure, and a test checks them over many random pairs.
const BOUND_REL_SLACK: f64 = 1e-9;
const BOUND_ABS_SLACK_KM: f64 = 1e-9;

/// Half-chords above this get no finite upper bound (near-antipodal points: the series below
/// converges slowly and the haversine figure is least precise there).
const MAX_BOUNDED_HALF_CHORD: f64 = 0.9;

/// Half the chord, `sin(theta / 2)` for the central angle `theta`. Rounding may push two
/// antipodes a hair beyond a chord of 2.
#[inline]
fn half_chord(chord_sq: f64) -> f64 {
    (chord_sq.sqrt() * 0.5).min(1.0)
}

/// A lower bound on [`Origin::distance_to`] from the squared chord ([`Origin::chord_sq`]):
/// a few multiplications and one `sqrt`, no trigonometry. Never above the haversine figure as
/// computed, rounding included, so a decision taken on the bound is the one the figure gives.
///
/// `theta = 2 asin(x)` for the half-chord `x`, and the Maclaurin series of `asin` has positive
/// coefficients: `asin(x) >= x + x^3/6 + 3x^5/40`. Non-decreasing in `chord_sq`, also as
/// rounded (every step is monotonic).
#[inline]
pub(crate) fn distance_lower_km(chord_sq: f64) -> f64 {
    let x = half_chord(chord_sq);
    let x2 = x * x;
    let lower = 2.0 * EARTH_RADIUS_KM * x * (1.0 + x2 * (1.0 / 6.0 + x2 * (3.0 / 40.0)));
    (lower * (1.0 - BOUND_REL_SLACK) - BOUND_ABS_SLACK_KM).max(0.0)
}

/// An upper bound on [`Origin::distance_to`] from the squared chord, like
/// [`distance_lower_km`]: the `asin` series coefficients after the first are at most 1/6, so
/// `asin(x) <= x + x^3 / (6 (1 - x^2))`. Infinite for near-antipodes. Non-decreasing in
/// `chord_sq`, also as rounded.
#[inline]
pub(crate) fn distance_upper_km(chord_sq: f64) -> f64 {
    let x = half_chord(chord_sq);
    if x > MAX_BOUNDED_HALF_CHORD {
        return f64::INFINITY;
    }
    let x2 = x * x;
    let upper = 2.0 * EARTH_RADIUS_KM * x * (1.0 + x2 / (6.0 * (1.0 - x2)));
    upper * (1.0 + BOUND_REL_SLACK) + BOUND_ABS_SLACK_KM
}

/// A point with its trigonometry precomputed, so measuring from one customer to thousands of
/// printers costs one `sin`/`cos` pair per printer instead of two.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub(crate) point: GeoPoint,
    lat_rad: f64,
    cos_lat: f64,
    unit: [f64; 3],
}

impl Origin {
    pub(crate) fn new(point: GeoPoint) -> Self {
        let lat_rad = point.lat_deg.to_radians();
        Self {
            point,
            lat_rad,
            cos_lat: lat_rad.cos(),
            unit: unit_vector(point),
        }
    }

    /// Squared chord to a point given by its [`unit_vector`]: monotonic in the great-circle
    /// distance, and turned into bounds on it by [`distance_lower_km`] and
    /// [`distance_upper_km`].
    #[inline]
    pub(crate) fn chord_sq(&self, unit: &[f64; 3]) -> f64 {
        let [dx, dy, dz] = [
            unit[0] - self.unit[0],
            unit[1] - self.unit[1],
            unit[2] - self.unit[2],
        ];
        dx * dx + dy * dy + dz * dz
    }

    pub(crate) fn distance_km(&self, to: &GeoPoint) -> f64 {
        self.distance_to(to.lat_deg, to.lon_deg, to.lat_deg.to_radians().cos())
    }

    /// Haversine to a point given with the cosine of its latitude already computed.
    pub(crate) fn distance_to(&self, lat_deg: f64, lon_deg: f64, cos_lat: f64) -> f64 {
        let half_dlat = (lat_deg.to_radians() - self.lat_rad) * 0.5;
        let half_dlon = (lon_deg - self.point.lon_deg).to_radians() * 0.5;
        let (s_lat, s_lon) = (half_dlat.sin(), half_dlon.sin());
        let h = s_lat * s_lat + self.cos_lat * cos_lat * s_lon * s_lon;
        // atan2 form: well conditioned near antipodes, where asin(sqrt(h)) loses precision;
        // the clamp absorbs rounding that pushes h a hair outside [0, 1].
        let h = h.clamp(0.0, 1.0);
        2.0 * EARTH_RADIUS_KM * h.sqrt().atan2((1.0 - h).sqrt())
    }

    /// A lower bound on the distance from latitude alone (no trigonometry): the great-circle
    /// distance is never shorter than the north-south separation.
    pub(crate) fn min_distance_km(&self, lat_deg: f64) -> f64 {
        (lat_deg - self.point.lat_deg).abs() * KM_PER_DEG_LAT
    }
}

/// A customer location reduced to a geohash cell of [`COARSE_GEOHASH_LEN`] characters
/// (~1.2 km x 0.6 km): the only form in which it may be stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CoarseLocation(String);

impl CoarseLocation {
    /// Reduces an exact point to its coarse cell.
    pub fn from_point(point: GeoPoint) -> Result<Self, GeoError> {
        let coord = geohash::Coord {
            x: point.lon_deg,
            y: point.lat_deg,
        };
        geohash::encode(coord, COARSE_GEOHASH_LEN)
            .map(Self)
            .map_err(|e| GeoError::Geohash(e.to_string()))
    }

    /// Accepts a stored geohash; it must be exactly [`COARSE_GEOHASH_LEN`] valid characters, so
    /// nothing finer than ~1 km can be smuggled in through this type.
    pub fn parse(hash: &str) -> Result<Self, GeoError> {
        if hash.chars().count() != COARSE_GEOHASH_LEN {
            return Err(GeoError::GeohashLength {
                len: hash.chars().count(),
                want: COARSE_GEOHASH_LEN,
            });
        }
        geohash::decode(hash).map_err(|e| GeoError::Geohash(e.to_string()))?;
        Ok(Self(hash.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The centre of the cell; within ~0.7 km of the original point.
    pub fn centre(&self) -> Result<GeoPoint, GeoError> {
        let (c, _, _) = geohash::decode(&self.0).map_err(|e| GeoError::Geohash(e.to_string()))?;
        GeoPoint::new(c.y, c.x)
    }
}

impl TryFrom<String> for CoarseLocation {
    type Error = GeoError;
    fn try_from(s: String) -> Result<Self, GeoError> {
        Self::parse(&s)
    }
}

impl From<CoarseLocation> for String {
    fn from(c: CoarseLocation) -> String {
        c.0
    }
}

impl std::fmt::Display for CoarseLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The customer location as it may be stored: a 6-character geohash (~1 km). Shorthand for
/// [`CoarseLocation::from_point`]; decode with [`CoarseLocation::centre`].
pub fn coarse_location(point: GeoPoint) -> Result<CoarseLocation, GeoError> {
    CoarseLocation::from_point(point)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lon: f64) -> GeoPoint {
        GeoPoint::new(lat, lon).unwrap()
    }

    #[test]
    fn rejects_out_of_range_points() {
        assert!(matches!(
            GeoPoint::new(90.5, 0.0),
            Err(GeoError::Latitude(_))
        ));
        assert!(matches!(
            GeoPoint::new(0.0, -181.0),
            Err(GeoError::Longitude(_))
        ));
        assert!(GeoPoint::new(f64::NAN, 0.0).is_err());
        let bad: Result<GeoPoint, _> = toml::from_str("lat_deg = 91.0\nlon_deg = 0.0");
        assert!(bad.is_err());
    }

    #[test]
    fn haversine_matches_known_distances() {
        // Paris (Notre-Dame) to London (St Paul's): ~342 km by great circle.
        let d = p(48.8530, 2.3499).distance_km(&p(51.5138, -0.0984));
        assert!((d - 342.5).abs() < 2.0, "{d}");
        // One degree of longitude on the equator is 2*pi*R/360.
        let d = p(0.0, 0.0).distance_km(&p(0.0, 1.0));
        assert!((d - KM_PER_DEG_LAT).abs() < 1e-9, "{d}");
        // Antipodes: half the circumference, no NaN from rounding.
        let d = p(10.0, 20.0).distance_km(&p(-10.0, -160.0));
        assert!(
            (d - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-3,
            "{d}"
        );
    }

    /// Random pairs: uniform on the sphere, very close (down to identical), and near-antipodal.
    #[test]
    fn chord_bounds_bracket_the_haversine_figure() {
        // A small deterministic generator (xorshift) keeps this free of dev-dependencies.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut unit = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut widest_nearby = 0.0_f64;
        for i in 0..200_000 {
            let lat = (2.0 * unit() - 1.0).asin().to_degrees().clamp(-90.0, 90.0);
            let lon = 360.0 * unit() - 180.0;
            let a = p(lat, lon);
            let scale = 10f64.powf(-12.0 * unit());
            let (dlat, dlon) = ((unit() - 0.5) * scale, (unit() - 0.5) * scale);
            let b = match i % 4 {
                0 => p(
                    (2.0 * unit() - 1.0).asin().to_degrees().clamp(-90.0, 90.0),
                    360.0 * unit() - 180.0,
                ),
                1 => p(
                    (lat + dlat).clamp(-90.0, 90.0),
                    (lon + dlon).clamp(-180.0, 180.0),
                ),
                2 => {
                    let anti = if lon > 0.0 { lon - 180.0 } else { lon + 180.0 };
                    p(
                        (-lat + dlat).clamp(-90.0, 90.0),
                        (anti + dlon).clamp(-180.0, 180.0),
                    )
                }
                _ => a,
            };
            let origin = Origin::new(b);
            let km = origin.distance_km(&a);
            let chord_sq = origin.chord_sq(&unit_vector(a));
            let (lower, upper) = (distance_lower_km(chord_sq), distance_upper_km(chord_sq));
            assert!(
                lower <= km && km <= upper,
                "{a:?} {b:?}: {lower} <= {km} <= {upper}"
            );
            if km < 300.0 {
                widest_nearby = widest_nearby.max((upper - lower - 1e-8).max(0.0) / km);
            }
        }
        // Tight enough to settle almost every comparison without the exact figure.
        assert!(widest_nearby < 1e-6, "{widest_nearby}");
    }

    #[test]
    fn latitude_bound_never_exceeds_true_distance() {
        let o = Origin::new(p(47.0, 8.0));
        for (lat, lon) in [(47.5, 8.0), (46.0, 12.0), (-30.0, 100.0), (89.0, -170.0)] {
            let q = p(lat, lon);
            assert!(o.min_distance_km(q.lat_deg) <= o.distance_km(&q) + 1e-9);
        }
    }

    #[test]
    fn coarse_location_is_a_6_char_cell_within_a_km() {
        let exact = p(47.376_887, 8.541_694);
        let coarse = coarse_location(exact).unwrap();
        assert_eq!(coarse.as_str().len(), 6);
        let centre = coarse.centre().unwrap();
        let err = exact.distance_km(&centre);
        assert!(err < 0.75, "cell centre is {err} km away");
        assert!(err > 0.0, "the exact point must not survive the round trip");
        // Points a few metres apart share the cell; the stored form is only the cell.
        assert_eq!(coarse_location(p(47.376_9, 8.541_7)).unwrap(), coarse);
    }

    #[test]
    fn stored_geohash_must_be_coarse() {
        assert!(CoarseLocation::parse("u0qj88").is_ok());
        assert!(matches!(
            CoarseLocation::parse("u0qj88xyz"),
            Err(GeoError::GeohashLength { len: 9, .. })
        ));
        assert!(CoarseLocation::parse("u0qja!").is_err());
    }
}
