//! `npp_atserver`'s records on its own atServer (noports.md §9.8): groups as self keys
//! `<id>.groups.policy.sshnp@<policy>`, device heartbeats as `<device>.devices.policy.sshnp@…`.
//! Values are encrypted with the atSign's self-encryption key (AES-256-CTR, a fresh IV in the
//! record's `ivNonce`), as the official atClient stores self keys. Every change is also
//! notified to ourselves on the same key, which is how a running service follows it.
use crate::at::{AtClient, AtError, NotifyOptions};
use crate::crypto::{aes_ctr, b64, random};
use crate::json::{self, Value};

use super::rules::{check_id, Group};

const GROUP_SUFFIX: &str = ".groups.policy.sshnp";

fn check_key(key: &str) -> Result<(), AtError> {
    if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AtError::Invalid(format!("invalid key {key:?}")));
    }
    Ok(())
}

/// Stores `value` under our self key `key` (`name@me`), encrypted.
pub async fn put_self(client: &AtClient, key: &str, value: &str) -> Result<(), AtError> {
    check_key(key)?;
    let iv = random::bytes::<16>();
    let cipher = aes_ctr::encrypt_b64(&client.keys().self_encryption_key, &iv, value);
    let iv = b64::encode(&iv);
    client
        .request(&format!(
            "update:isEncrypted:true:ivNonce:{iv}:{key} {cipher}"
        ))
        .await
        .map(|_| ())
}

/// Reads our self key `key`, decrypting it when it is marked encrypted.
pub async fn get_self(client: &AtClient, key: &str) -> Result<String, AtError> {
    check_key(key)?;
    let text = client.request(&format!("llookup:all:{key}")).await?;
    let all = match json::parse(&text) {
        Ok(Value::Object(o)) => o,
        _ => {
            return Err(AtError::Malformed(format!(
                "llookup:all of {key} is not JSON"
            )))
        }
    };
    let data = all
        .get_str("data")
        .ok_or_else(|| AtError::Malformed(format!("{key} has no value")))?;
    let meta = all.get_object("metaData");
    if meta.and_then(|m| m.get_bool("isEncrypted")) != Some(true) {
        return Ok(data.to_string());
    }
    let iv = match meta.and_then(|m| m.get_str("ivNonce")) {
        Some(s) if !s.is_empty() => <[u8; 16]>::try_from(b64::decode(s)?.as_slice())
            .map_err(|_| AtError::Malformed(format!("{key}: ivNonce is not 16 bytes")))?,
        // Records written before IVs were used have none: a zero IV (atprotocol.md §9).
        _ => [0u8; 16],
    };
    aes_ctr::decrypt_b64(&client.keys().self_encryption_key, &iv, data)
        .map_err(|e| AtError::Malformed(format!("{key}: {e}")))
}

fn group_key(client: &AtClient, id: &str) -> String {
    format!("{id}{GROUP_SUFFIX}{}", client.atsign())
}

/// Every group record; one that cannot be read is skipped with a warning.
pub async fn load_groups(client: &AtClient) -> Result<Vec<Group>, AtError> {
    let me = client.atsign().as_str().to_string();
    let keys = client.scan(Some(r"\.groups\.policy\.sshnp")).await?;
    let mut groups = Vec::new();
    for key in keys {
        let Some(id) = key
            .strip_suffix(me.as_str())
            .and_then(|k| k.strip_suffix(GROUP_SUFFIX))
        else {
            continue;
        };
        if check_id(id).is_err() {
            continue; // shared keys (`@x:…`) and foreign names are not group records
        }
        match get_self(client, &key)
            .await
            .map_err(|e| e.to_string())
            .and_then(|v| Group::from_json(&v))
        {
            Ok(mut g) => {
                g.id = id.to_string();
                groups.push(g);
            }
            Err(e) => log::warn!("group record {key} skipped: {e}"),
        }
    }
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(groups)
}

/// Every stored device heartbeat: (device name, the daemon's ping-response JSON).
pub async fn load_devices(client: &AtClient) -> Result<Vec<(String, String)>, AtError> {
    let me = client.atsign().as_str().to_string();
    let mut out = Vec::new();
    for key in client.scan(Some(r"\.devices\.policy\.sshnp")).await? {
        let Some(device) = key
            .strip_suffix(me.as_str())
            .and_then(|k| k.strip_suffix(".devices.policy.sshnp"))
        else {
            continue;
        };
        if device.contains([':', '@']) {
            continue;
        }
        match get_self(client, &key).await {
            Ok(v) => out.push((device.to_string(), v)),
            Err(e) => log::warn!("device record {key} skipped: {e}"),
        }
    }
    out.sort();
    Ok(out)
}

/// The next free numeric id (the official services number groups 1, 2, …).
pub fn next_id(groups: &[Group]) -> String {
    let max = groups
        .iter()
        .filter_map(|g| g.id.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    (max + 1).to_string()
}

/// Writes a group record and tells a running service about it.
pub async fn write_group(client: &AtClient, g: &Group) -> Result<(), AtError> {
    check_id(&g.id).map_err(AtError::Invalid)?;
    let json = g.to_json();
    put_self(client, &group_key(client, &g.id), &json).await?;
    let me = client.atsign().clone();
    client
        .notify(
            &me,
            &format!("{}{GROUP_SUFFIX}", g.id),
            &json,
            NotifyOptions::default(),
        )
        .await
        .map(|_| ())
}

/// Deletes a group record and tells a running service about it.
pub async fn delete_group(client: &AtClient, id: &str) -> Result<(), AtError> {
    check_id(id).map_err(AtError::Invalid)?;
    client.delete(&group_key(client, id)).await?;
    let me = client.atsign();
    let uuid = random::uuid_v4();
    client
        .request(&format!(
            "notify:id:{uuid}:delete:messageType:key:{me}:{id}{GROUP_SUFFIX}{me}"
        ))
        .await
        .map(|_| ())
}
