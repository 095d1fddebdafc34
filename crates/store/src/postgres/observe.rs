//! PostgreSQL: rule hit counts, flow-log settings and flow records
//! (migrations/postgres/0007_observe.sql).

use palisade_core::observe::{FlowLogEvents, FlowRecord};
use postgres::types::ToSql;
use uuid::Uuid;

use super::PgTx;
use crate::observe::{self as sql, FLOW_COLUMNS, FlowLogFilter, FlowLogTarget, FlowParams, RULE_HITS_COLUMNS, RuleHitsRecord, StoredFlow};
use crate::rows::{Columns, count_from_row, id_text, ids_text};
use crate::{ObserveTx, StoreResult};

impl ObserveTx for PgTx<'_> {
    fn add_rule_hits(&mut self, hits: &[RuleHitsRecord]) -> StoreResult<u64> {
        let mut counted = 0;
        for hit in hits {
            counted += self.execute(
                sql::ADD_RULE_HITS,
                &[&id_text(hit.rule_id), &id_text(hit.port_id), &hit.client_id, &hit.packets, &hit.bytes, &hit.last_hit_ms],
            )?;
        }
        Ok(counted)
    }

    fn rule_hits(&mut self, rule_ids: &[Uuid]) -> StoreResult<Vec<RuleHitsRecord>> {
        self.rows(
            &format!(
                "SELECT {RULE_HITS_COLUMNS} FROM rule_hits WHERE rule_id = ANY($1::text[]) ORDER BY rule_id COLLATE \"C\", port_id COLLATE \"C\""
            ),
            &[&ids_text(rule_ids)],
            sql::rule_hits_from_row,
        )
    }

    fn set_flow_log(&mut self, target: FlowLogTarget, client_id: i64, events: Option<FlowLogEvents>) -> StoreResult<()> {
        let id = id_text(target.id());
        match events {
            Some(events) => self.execute(sql::UPSERT_FLOW_LOG_SETTING, &[&target.kind(), &id, &client_id, &sql::events_text(events)])?,
            None => self.execute(sql::DELETE_FLOW_LOG_SETTING, &[&target.kind(), &id])?,
        };
        match target {
            FlowLogTarget::Group(group) => self.pending.group_changed(group),
            FlowLogTarget::Port(_) => {
                if let Some(host) = self.row_opt("SELECT host FROM ports WHERE id = $1", &[&id], |r| r.column::<String>(0))? {
                    self.pending.host_changed(&host);
                }
            }
        }
        Ok(())
    }

    fn get_flow_log(&mut self, target: FlowLogTarget) -> StoreResult<Option<FlowLogEvents>> {
        self.row_opt(sql::GET_FLOW_LOG_SETTING, &[&target.kind(), &id_text(target.id())], sql::events_from_row)
    }

    fn flow_log_settings(&mut self, port_ids: &[Uuid], group_ids: &[Uuid]) -> StoreResult<Vec<(FlowLogTarget, FlowLogEvents)>> {
        self.rows(
            "SELECT kind, target_id, events FROM flow_log_settings
             WHERE (kind = 'port' AND target_id = ANY($1::text[])) OR (kind = 'group' AND target_id = ANY($2::text[]))",
            &[&ids_text(port_ids), &ids_text(group_ids)],
            sql::setting_from_row,
        )
    }

    fn insert_flows(&mut self, client_id: i64, records: &[FlowRecord], cap: u64) -> StoreResult<u64> {
        for record in records {
            let p = FlowParams::new(client_id, record);
            self.execute(
                sql::INSERT_FLOW,
                &[
                    &p.client_id,
                    &p.port_id,
                    &p.direction,
                    &p.src_addr,
                    &p.src_port,
                    &p.dst_addr,
                    &p.dst_port,
                    &p.protocol,
                    &p.icmp_type,
                    &p.icmp_code,
                    &p.packets,
                    &p.bytes,
                    &p.start_ms,
                    &p.end_ms,
                    &p.action,
                    &p.rule_id,
                ],
            )?;
        }
        let keep = i64::try_from(cap).unwrap_or(i64::MAX);
        self.execute(sql::TRIM_FLOWS, &[&client_id, &i64::MAX, &keep])
    }

    fn list_flows(&mut self, filter: &FlowLogFilter) -> StoreResult<(u64, Vec<StoredFlow>)> {
        let ports = filter.port_ids.as_deref().map(ids_text);
        let condition = "($1::bigint IS NULL OR client_id = $1)
            AND ($2::text[] IS NULL OR port_id = ANY($2))
            AND ($3::bigint IS NULL OR start_ms >= $3)
            AND ($4::bigint IS NULL OR start_ms <= $4)
            AND ($5::text IS NULL OR action = $5)";
        let action = filter.action.map(sql::action_text);
        let filters: [&(dyn ToSql + Sync); 5] = [&filter.client_id, &ports, &filter.since_ms, &filter.until_ms, &action];
        let count = self.row(&format!("SELECT COUNT(*) FROM flow_logs WHERE {condition}"), &filters, count_from_row)?;
        let limit = i64::from(filter.limit);
        let flows = self.rows(
            &format!("SELECT {FLOW_COLUMNS} FROM flow_logs WHERE {condition} ORDER BY start_ms DESC, id DESC LIMIT $6"),
            &[&filters[..], &[&limit]].concat(),
            sql::flow_from_row,
        )?;
        Ok((count, flows))
    }

    fn prune_flows(&mut self, before_ms: i64, limit: u32) -> StoreResult<u64> {
        self.execute(sql::PRUNE_FLOWS, &[&before_ms, &i64::from(limit)])
    }
}
