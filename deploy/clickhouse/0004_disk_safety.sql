-- What a full disk must not do to the trail. A merge that runs while another process fills the disk
-- to its last byte can commit a part that cannot be read back (seen on chDB: an empty marks file,
-- detached as broken on the next start), and chDB ships old_parts_lifetime = 0, so the parts that
-- merge replaced are gone by then and their rows with them.
--
-- min_free_disk_ratio_to_perform_insert: below 10% free, ClickHouse refuses every insert (the store
--   consumer backs off and commits nothing, so nothing is lost and it catches up once space is
--   freed), which keeps the store's own writes from ever filling the disk; merges keep their room.
--   Prometheus pages at 15% (CollectionAuditClickHouseDiskFilling), before this point.
-- old_parts_lifetime: replaced parts stay on disk 8 minutes (the ClickHouse server default), so a
--   merged part found broken on start is replaced by the parts it was made from.

ALTER TABLE audit.actions MODIFY SETTING min_free_disk_ratio_to_perform_insert = 0.1, old_parts_lifetime = 480;
ALTER TABLE audit.reference_events MODIFY SETTING min_free_disk_ratio_to_perform_insert = 0.1, old_parts_lifetime = 480;
ALTER TABLE audit.alerts MODIFY SETTING min_free_disk_ratio_to_perform_insert = 0.1, old_parts_lifetime = 480;
ALTER TABLE audit.dead_letters MODIFY SETTING min_free_disk_ratio_to_perform_insert = 0.1, old_parts_lifetime = 480;
ALTER TABLE audit.access_log MODIFY SETTING min_free_disk_ratio_to_perform_insert = 0.1, old_parts_lifetime = 480;
