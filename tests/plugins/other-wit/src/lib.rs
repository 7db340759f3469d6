//! Implements backup:strategy@0.2.0, which the host (0.1.0) must refuse as incompatible.
wit_bindgen::generate!({ path: "wit", world: "backup-strategy" });

struct Other;

impl exports::backup::strategy::strategy::Guest for Other {
    fn plan_backup(pvc: String) -> Result<String, String> {
        backup::strategy::host::log(&pvc);
        Ok(pvc)
    }
}

export!(Other);
