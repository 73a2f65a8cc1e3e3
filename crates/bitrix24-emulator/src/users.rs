//! What the portal knows about its users, for the probe methods and `im.notify.get`.
//!
//! The emulator's users are only ids (`1..=n`, some inactive), but clients that probe a portal
//! (`user.current`, `user.get`, the `users` list of `im.notify.get`) expect names, e-mails and the
//! other fields a real account has. They are derived from the id, so they are stable across
//! restarts and the same in every answer.

use serde_json::{Value, json};

use crate::timing::iso8601;

const FIRST: [(&str, &str); 10] = [
    ("John", "M"),
    ("Maria", "F"),
    ("Alex", "M"),
    ("Olga", "F"),
    ("Ivan", "M"),
    ("Anna", "F"),
    ("Peter", "M"),
    ("Elena", "F"),
    ("Mark", "M"),
    ("Sofia", "F"),
];
const LAST: [&str; 10] = [
    "Smith", "Garcia", "Brown", "Novak", "Petrov", "Miller", "Taylor", "Costa", "Wagner", "Kim",
];
/// Colours the messenger gives users.
const COLORS: [&str; 10] = [
    "#1eb4aa", "#df532d", "#29619b", "#728f7a", "#ba9c7b", "#e8a441", "#556574", "#909090",
    "#5e5f5e", "#ab7761",
];
/// 2024-01-15T00:00:00+00:00: every account was registered then.
const REGISTERED_AT: u64 = 1_705_276_800;

/// One user's account.
#[derive(Debug, Clone)]
pub struct Profile {
    pub id: u64,
    pub active: bool,
    pub first_name: &'static str,
    pub last_name: &'static str,
    pub gender: &'static str,
}

impl Profile {
    pub fn new(id: u64, active: bool) -> Profile {
        let i = id.saturating_sub(1);
        let (first_name, gender) = FIRST[(i % 10) as usize];
        // A different rotation for last names, so users 1 and 11 differ.
        let last_name = LAST[((i + i / 10) % 10) as usize];
        Profile {
            id,
            active,
            first_name,
            last_name,
            gender,
        }
    }

    pub fn email(&self) -> String {
        format!("user{}@example.com", self.id)
    }

    pub fn work_position(&self) -> &'static str {
        if self.id == 1 {
            "Administrator"
        } else {
            "Manager"
        }
    }

    /// User 1 administers the portal.
    pub fn is_admin(&self) -> bool {
        self.id == 1
    }

    /// The uppercase user record of `user.current` / `user.get`: ids as strings, dates as
    /// RFC 3339, as the portal sends them.
    pub fn rest_fields(&self, online: bool, now: u64) -> Value {
        json!({
            "ID": self.id.to_string(),
            "ACTIVE": self.active,
            "NAME": self.first_name,
            "LAST_NAME": self.last_name,
            "SECOND_NAME": "",
            "EMAIL": self.email(),
            "LAST_LOGIN": iso8601(now),
            "DATE_REGISTER": iso8601(REGISTERED_AT),
            "TIME_ZONE": "",
            "IS_ONLINE": if online { "Y" } else { "N" },
            "PERSONAL_GENDER": self.gender,
            "PERSONAL_WWW": "",
            "PERSONAL_BIRTHDAY": "",
            "PERSONAL_MOBILE": "",
            "PERSONAL_CITY": "",
            "WORK_PHONE": "",
            "WORK_POSITION": self.work_position(),
            "UF_EMPLOYMENT_DATE": "",
            "UF_DEPARTMENT": [1],
            "USER_TYPE": "employee",
        })
    }

    /// The lowercase messenger user object of `im.notify.get` and `im.notify.history.search`.
    pub fn im_fields(&self) -> Value {
        json!({
            "id": self.id,
            "active": self.active,
            "name": format!("{} {}", self.first_name, self.last_name),
            "first_name": self.first_name,
            "last_name": self.last_name,
            "work_position": self.work_position(),
            "color": COLORS[(self.id.saturating_sub(1) % 10) as usize],
            "avatar": "",
            "avatar_hr": "",
            "gender": self.gender,
            "birthday": "",
            "extranet": false,
            "network": false,
            "bot": false,
            "connector": false,
            "external_auth_id": "default",
            "status": "online",
            "idle": false,
            "last_activity_date": false,
            "mobile_last_date": false,
            "desktop_last_date": false,
            "absent": false,
            "departments": [1],
            "phones": false,
            "bot_data": null,
            "type": "user",
            "website": "",
            "email": self.email(),
        })
    }
}
