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

/// A point with its trigonometry precomputed, so measuring from one customer to thousands of
/// printers costs one `sin`/`cos` pair per printer instead of two.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub(crate) point: GeoPoint,
    lat_rad: f64,
    cos_lat: f64,
}

impl Origin {
    pub(crate) fn new(point: GeoPoint) -> Self {
        let lat_rad = point.lat_deg.to_radians();
        Self {
            point,
            lat_rad,
            cos_lat: lat_rad.cos(),
        }
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
