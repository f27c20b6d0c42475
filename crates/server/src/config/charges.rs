//! The user rule's model: today's fixed cooldown, or a pool of charges (wplace's charges,
//! pxls's stacking): up to `--charges-max` placements stored, one regained every
//! `--charge-every` seconds, a new user starting full. The rule is the domain's
//! (`rplace_domain::policy::Charges`); this only parses the flags.

use super::{ConfigError, bad};
use clap::{Args, ValueEnum};
use rplace_domain::policy::{Charges, MAX_CHARGES, MAX_EVERY_MS, Params};

/// Pool size when `--cooldown-model charges` is given without `--charges-max`.
pub const DEFAULT_CHARGES_MAX: u64 = 30;
/// Seconds per charge when `--cooldown-model charges` is given without `--charge-every`.
pub const DEFAULT_CHARGE_EVERY: f64 = 30.0;

/// Which rule limits one user's placements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum CooldownModel {
    /// `--cooldown` seconds after every placement.
    #[default]
    Fixed,
    /// A pool of `--charges-max` placements, one regained every `--charge-every` seconds.
    Charges,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ChargesArgs {
    /// How one user's placements are limited: `fixed` (wait `--cooldown` after each) or
    /// `charges` (a pool of `--charges-max`, one more every `--charge-every` seconds; a
    /// new user starts full; `--cooldown` is not used).
    #[arg(long, env = "RPLACE_COOLDOWN_MODEL", value_enum, default_value_t = CooldownModel::Fixed)]
    pub cooldown_model: CooldownModel,

    /// Charges model: most placements a user can store (1 to 100000). Default 30.
    #[arg(long, env = "RPLACE_CHARGES_MAX")]
    pub charges_max: Option<u64>,

    /// Charges model: seconds to regain one charge (decimals allowed, 0.001 to 86400).
    /// Default 30.
    #[arg(long, env = "RPLACE_CHARGE_EVERY")]
    pub charge_every: Option<f64>,
}

impl ChargesArgs {
    /// `policy` with the model in force; a charges flag without the charges model, or a
    /// value out of range, names its flag.
    pub fn apply(&self, policy: Params) -> Result<Params, ConfigError> {
        if self.cooldown_model == CooldownModel::Fixed {
            let only = "applies only with --cooldown-model charges";
            if self.charges_max.is_some() {
                return Err(bad("charges-max", "RPLACE_CHARGES_MAX", only));
            }
            if self.charge_every.is_some() {
                return Err(bad("charge-every", "RPLACE_CHARGE_EVERY", only));
            }
            return Ok(policy);
        }
        let max = self.charges_max.unwrap_or(DEFAULT_CHARGES_MAX);
        if !(1..=u64::from(MAX_CHARGES)).contains(&max) {
            return Err(bad(
                "charges-max",
                "RPLACE_CHARGES_MAX",
                format!("must be from 1 to {MAX_CHARGES}, got {max}"),
            ));
        }
        let every = self.charge_every.unwrap_or(DEFAULT_CHARGE_EVERY);
        let max_secs = MAX_EVERY_MS as f64 / 1000.0;
        let every_ms = (every * 1000.0).round();
        if !every.is_finite() || !(1.0..=MAX_EVERY_MS as f64).contains(&every_ms) {
            return Err(bad(
                "charge-every",
                "RPLACE_CHARGE_EVERY",
                format!("must be a number of seconds from 0.001 to {max_secs}, got {every}"),
            ));
        }
        let charges = Charges::new(max, every_ms as i64)
            .map_err(|e| bad("charges-max", "RPLACE_CHARGES_MAX", e))?;
        Ok(policy.with_charges(charges))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(args: &[&str]) -> String {
        Config::from_args(args)
            .unwrap()
            .settings()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_charges_model_is_parsed() {
        let c = Config::from_args([
            "--cooldown-model",
            "charges",
            "--charges-max",
            "7",
            "--charge-every",
            "0.25",
        ])
        .unwrap();
        let p = c.settings().unwrap().policy;
        let charges = p.charges().expect("charges model");
        assert_eq!((charges.max(), charges.every_ms()), (7, 250));
        assert_eq!(p.cooldown().as_millis(), 0);
        let defaults = Config::from_args(["--cooldown-model", "charges"]).unwrap();
        let charges = defaults.settings().unwrap().policy.charges().unwrap();
        assert_eq!((charges.max(), charges.every_ms()), (30, 30_000));
        let fixed = Config::from_args::<_, &str>([]).unwrap();
        assert_eq!(fixed.settings().unwrap().policy.charges(), None);
    }

    #[test]
    fn bad_combinations_name_the_flag() {
        assert!(err(&["--charges-max", "5"]).contains("--charges-max"));
        assert!(err(&["--charge-every", "5"]).contains("--charge-every"));
        let charges = ["--cooldown-model", "charges"];
        let with = |more: &[&'static str]| [&charges[..], more].concat();
        assert!(err(&with(&["--charges-max", "0"])).contains("--charges-max"));
        assert!(err(&with(&["--charges-max", "100001"])).contains("--charges-max"));
        assert!(err(&with(&["--charge-every", "0"])).contains("--charge-every"));
        assert!(err(&with(&["--charge-every", "0.0001"])).contains("--charge-every"));
        assert!(err(&with(&["--charge-every", "86401"])).contains("--charge-every"));
        assert!(err(&with(&["--charge-every", "NaN"])).contains("--charge-every"));
        assert!(Config::from_args(["--cooldown-model", "pool"]).is_err());
    }
}
