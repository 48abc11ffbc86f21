//! `acme.invoice`: Acme's invoices, kept in Sentry's database beside the
//! organizations and projects they bill. An invoice number is unique within
//! its organization; an invoice whose number the organization already has
//! is that invoice, reused rather than copied.

use relocate_plugin_sdk::{
    Answers, Ask, ColumnKind, Decision, ForeignKey, Found, Model, ModelDesc, OnMissing, Prepared, Record, Result,
    Scope, Session, Silo, register_plugin,
};

pub struct Invoice;

/// An invoice of the organization with the same number, already in the database.
const SAME_NUMBER: Ask<Found> = Ask::find("same number");

impl Model for Invoice {
    fn describe() -> ModelDesc {
        ModelDesc::new("acme.invoice", "acme_invoice", Scope::Organization, Silo::Region)
            .foreign_key(ForeignKey::to("organization", "sentry.organization"))
            // An invoice outlives a project that was not exported.
            .foreign_key(ForeignKey::to("project", "sentry.project").on_missing(OnMissing::SetNull))
            .column("number", ColumnKind::Text)
            .column("amount_cents", ColumnKind::Integer)
            .column("date_issued", ColumnKind::Datetime)
            .unique(&["organization", "number"])
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        // Acme's billing system writes numbers in upper case; old exports did not.
        if let Some(number) = record.text("number").map(str::to_uppercase) {
            record.set("number", number)?;
        }
        Ok(Prepared::ready().ask(SAME_NUMBER, record.find(&["organization", "number"])?))
    }

    fn resolve(&mut self, _: &Session, record: Record, answers: &Answers) -> Result<Decision> {
        Ok(match answers.get(SAME_NUMBER)? {
            Some(pk) => Decision::reuse(pk),
            None => Decision::insert(record),
        })
    }
}

register_plugin!("acme-invoice", [Invoice]);

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{TestHost, check_plugin, record};
    use relocate_plugin_sdk::{ImportFlags, ImportKind, Value};

    use super::*;

    fn invoice(pk: i64, number: &str) -> relocate_plugin_sdk::testing::InputRecord {
        record::<Invoice>(pk)
            .fk("organization", 1, 10, ImportKind::Inserted)
            .fk("project", 1, 20, ImportKind::Inserted)
            .set("number", number)
            .set("amount_cents", 1250)
            .set("date_issued", "2024-03-01T00:00:00.000Z")
            .build()
    }

    #[test]
    fn the_description_is_one_the_host_accepts() {
        assert_eq!(check_plugin::<__RelocatePlugin>(), Ok(()));
    }

    #[test]
    fn an_invoice_the_organization_has_is_reused_and_numbers_are_upper_case() {
        let host = TestHost::new(1);
        host.insert_row("acme.invoice", 7, &[("organization", 10.into()), ("number", "INV-1".into())]);
        let mut session = host.session::<Invoice>(Scope::Organization, ImportFlags::default());
        let decisions = session.run(vec![invoice(1, "inv-1"), invoice(2, "inv-2")]).unwrap();
        assert_eq!(decisions[0], Decision::Reuse(7));
        let Decision::Insert { values, pk: None } = &decisions[1] else { panic!("{:?}", decisions[1]) };
        assert_eq!(values[2], Value::Text("INV-2".into()));
        assert_eq!(host.mapping("acme.invoice", 1).unwrap().kind, ImportKind::Existing);
    }
}
